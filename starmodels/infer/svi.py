"""SVI with numpyro's AutoGuides by name: restarts across devices, early stopping, PSIS k-hat."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoBNAFNormal,
    AutoDelta,
    AutoDiagonalNormal,
    AutoIAFNormal,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
)
from numpyro.infer.initialization import init_to_median, init_to_value
from numpyro.infer.util import constrain_fn, initialize_model
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from starmodels.diagnostics import psis_khat
from starmodels.infer.batched import batched_map
from starmodels.infer.devices import choose_chain_method
from starmodels.infer.map import find_map
from starmodels.infer.timing import stopwatch
from starmodels.priors import physical_values

log = logging.getLogger("starmodels")

GUIDES = {
    "map": AutoDelta,
    "laplace": AutoLaplaceApproximation,
    "meanfield": AutoDiagonalNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "iaf": AutoIAFNormal,
    "bnaf": AutoBNAFNormal,
}


def make_guide(model, name: str, init_values: dict | None = None):
    """An AutoGuide by name (see ``GUIDES``), initialised at ``init_values`` (latent sites) if given."""
    if name not in GUIDES:
        raise ValueError(f"guide must be one of {sorted(GUIDES)}, got {name!r}")
    init = init_to_value(values=init_values) if init_values else init_to_median(num_samples=15)
    return GUIDES[name](model, init_loc_fn=init)


def _stopped(means: list[float], ses: list[float], patience: int, tol: float) -> bool:
    """No chunk in the last ``patience`` beat the best earlier chunk mean loss by more than ``tol``
    nats plus twice the latest chunk's standard error (improvement buried in gradient noise)."""
    if len(means) <= patience:
        return False
    best_before = min(means[:-patience])
    return min(means[-patience:]) > best_before - tol - 2.0 * ses[-1]


def run_svi(model, data, *, guide: str = "meanfield", steps: int = 20000, lr: float = 0.01,
            seed: int = 0, restarts: int = 1, chunk: int = 200, patience: int = 5, tol: float = 0.01,
            num_particles: int = 1, draws: int = 2000, init: str = "map", warm_start=None,
            progress: bool = True):
    """Fit ``guide`` to ``model`` by maximising the ELBO; return ``(draws, meta)``.

    Adam with an exponential decay to lr/10 over ``steps`` and gradient
    clipping. Runs in chunks of ``chunk`` steps and stops when ``patience``
    chunks in a row bring no improvement of the mean loss larger than ``tol``
    nats plus its noise (two standard errors). The result averages the
    iterates of the last chunk (Polyak averaging), which removes most of the
    jitter that a constant-noise optimiser leaves in the variational
    parameters. ``restarts`` independent fits run in parallel across host
    devices (vectorised if there are too few); the best final ELBO wins.
    ``init``: ``"map"`` starts every guide at a multi-start MAP point,
    ``"prior"`` at numpyro's median init; ``warm_start`` (a VI Posterior)
    starts at its latent mean instead, e.g. full-rank from mean-field.
    """
    if min(steps, restarts, chunk, draws) < 1:
        raise ValueError("steps, restarts, chunk and draws must be >= 1")
    key = jax.random.PRNGKey(seed)
    k_map, k_run, k_draw = jax.random.split(key, 3)
    method = choose_chain_method(restarts)
    grads = 0
    with stopwatch() as t_init:
        init_values = None
        if warm_start is not None:
            init_values = {k: jnp.asarray(v) for k, v in warm_start.meta["latent_mean"].items()}
        elif init == "map":
            res = find_map(model, data, k_map)
            init_values = constrain_fn(model, (), {"data": data}, res.z)
            grads += res.gradient_evals
        elif init != "prior":
            raise ValueError(f"init must be 'map' or 'prior', got {init!r}")
        g = make_guide(model, guide, init_values)
        opt = optax.chain(optax.clip_by_global_norm(100.0),
                          optax.adam(optax.exponential_decay(lr, steps, 0.1)))
        svi = SVI(model, g, optax_to_numpyro(opt), Trace_ELBO(num_particles=num_particles))
        keys = jax.random.split(k_run, restarts)
        svi.init(keys[0], data=data)  # set the guide's prototype eagerly, outside any transform
        mapper = {"parallel": jax.pmap, "vectorized": jax.vmap}.get(method, jax.vmap)
        states = mapper(lambda k: svi.init(k, data=data))(keys)
        raw = lambda st: svi.optim.get_params(st.optim_state)  # noqa: E731  unconstrained params

        def run_chunk(state):
            def step(carry, _):
                st, total = carry
                st, loss = svi.update(st, data=data)
                return (st, jax.tree_util.tree_map(jnp.add, total, raw(st))), loss

            zero = jax.tree_util.tree_map(jnp.zeros_like, raw(state))
            (state, total), losses = jax.lax.scan(step, (state, zero), None, length=chunk)
            return state, jax.tree_util.tree_map(lambda t: t / chunk, total), losses

        step_chunk = mapper(run_chunk)
        jax.block_until_ready(states)

    trace, means, ses = [], [[] for _ in range(restarts)], [[] for _ in range(restarts)]
    done = np.zeros(restarts, bool)
    n_chunks = -(-steps // chunk)
    bar = tqdm(total=n_chunks * chunk, desc=f"SVI {guide}", disable=not progress)
    with stopwatch() as t_run:
        for _ in range(n_chunks):
            states, averaged, losses = step_chunk(states)
            losses = np.asarray(losses)
            trace.append(losses)
            for r in range(restarts):
                means[r].append(float(losses[r].mean()))
                ses[r].append(float(losses[r].std() / np.sqrt(chunk)))
                done[r] = done[r] or _stopped(means[r], ses[r], patience, tol)
            bar.update(chunk)
            bar.set_postfix(elbo=f"{-min(m[-1] for m in means):.4g}")
            if done.all():
                break
        jax.block_until_ready(states)
    bar.close()
    n_run = len(trace) * chunk
    grads += restarts * n_run * num_particles
    final = np.array([m[-1] for m in means])
    best = int(np.argmin(final))
    params = svi.constrain_fn(jax.tree_util.tree_map(lambda a: a[best], averaged))
    samples, khat, latent_mean = _posterior_draws(model, g, params, data, k_draw, draws)
    elbo_trace = -np.concatenate(trace, axis=1)  # (restarts, steps run)
    meta = {
        "method": "svi", "guide": guide, "guide_class": type(g).__name__, "restarts": restarts,
        "restart_method": method, "best_restart": best, "restart_elbos": (-final).tolist(),
        "final_elbo": float(-final[best]), "steps_run": n_run, "max_steps": steps,
        "converged": bool(done[best]), "lr": lr, "num_particles": num_particles, "seed": seed,
        "init": "warm_start" if warm_start is not None else init, "draws": draws,
        "compile_seconds": t_init.compile + t_run.compile, "init_seconds": t_init.run,
        "sampling_seconds": t_run.run, "gradient_evals": grads, "khat": khat,
        "elbo_trace": _thin(elbo_trace[best], 2000).tolist(),
        "latent_mean": {k: np.asarray(v).tolist() for k, v in latent_mean.items()},
    }
    if not done[best]:
        log.warning("SVI did not converge in %d steps; raise steps or lr", steps)
    return samples, meta


def _thin(x: np.ndarray, n: int) -> np.ndarray:
    return x if len(x) <= n else x[np.linspace(0, len(x) - 1, n).astype(int)]


def _posterior_draws(model, guide, params, data, key, n):
    """Draws in physical units, PSIS k-hat of the guide, and the guide's latent mean."""
    names = list(model.priors())
    info = initialize_model(key, model, model_kwargs={"data": data})
    k_q, _ = jax.random.split(key)
    if isinstance(guide, AutoDelta):
        z = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + a.shape),
                                   guide.median(params))
        latent = z
        khat = None  # a point estimate has no density to importance-sample
    else:
        # log q from the base draw and the flow's Jacobian: flows such as BNAF have no inverse
        base, transform = guide.get_base_dist(), guide.get_transform(params)
        eps = base.sample(k_q, (n,))
        flat = transform(eps)
        log_det = transform.log_abs_det_jacobian(eps, flat)
        log_q = base.log_prob(eps) - (log_det.sum(-1) if log_det.ndim == 2 else log_det)
        unc = jax.vmap(guide._unpack_latent)(flat)
        log_w = -batched_map(info.potential_fn, unc) - log_q
        khat = psis_khat(np.asarray(log_w))
        latent = batched_map(lambda u: constrain_fn(model, (), {"data": data}, u), unc)
    phys = jax.vmap(lambda lat: physical_values(model, lat, constrained=True))(latent)  # guide values
    samples = {k: np.asarray(phys[k])[None] for k in names}
    latent_mean = {k: v.mean(0) for k, v in latent.items()}
    return samples, khat, latent_mean
