"""SVI with numpyro's AutoGuides by name: restarts across devices, a documented stopping rule, PSIS k-hat.

Stopping rule: the ELBO is optimised with Adam in chunks of ``chunk`` steps;
after each chunk we take the chunk's mean loss and its standard error. The
ELBO has reached its plateau when the best chunk mean of the last
``patience`` chunks improves on the best earlier chunk mean by less than
``tol`` nats plus two standard errors of the latest chunk (improvement
indistinguishable from the gradient noise). Then ``refine`` more chunks run
at a tenth of the learning rate and their iterates are averaged
(Polyak-Ruppert): a constant-step stochastic optimiser leaves its parameters
jittering around the optimum by about one step, and the lower rate plus the
average remove most of that jitter. ``meta["stop_reason"]`` is ``"plateau"``
(plateau reached and refined) or ``"max_steps"`` (``num_steps`` ran out
first; the result then averages what was run of the refining phase, or the
last chunk).
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.handlers import replay, seed
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoBNAFNormal,
    AutoDelta,
    AutoDiagonalNormal,
    AutoIAFNormal,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
)
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import compute_log_probs, potential_energy
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from starmodels.diagnostics import psis_khat
from starmodels.infer import options as check
from starmodels.infer.batched import batched_map
from starmodels.infer.compiled import Bound, cached
from starmodels.infer.devices import choose_chain_method, device_count
from starmodels.infer.latents import physical_values
from starmodels.infer.map import find_mode, laplace, unflatten
from starmodels.infer.registry import FitError, Option, RunResult, register
from starmodels.infer.timing import stopwatch

log = logging.getLogger("starmodels")

REFINE_LR = 0.1  # learning-rate factor of the refining phase

GUIDES = {
    "map": AutoDelta,
    "laplace": AutoDelta,  # a point fit, then the Laplace approximation at it (our Hessian)
    "meanfield": AutoDiagonalNormal,
    "fullrank": AutoMultivariateNormal,
    "lowrank": AutoLowRankMultivariateNormal,
    "iaf": AutoIAFNormal,
    "bnaf": AutoBNAFNormal,
}
_LOC_GUIDES = ("meanfield", "fullrank", "lowrank")  # guides started at given latent values via auto_loc


def _warm_start_check(v):
    from starmodels.results import Posterior

    if v is None:
        return None
    if not isinstance(v, Posterior) or "latent_mean" not in v.meta:
        return f"must be a Posterior from an SVI fit (with a latent mean), got {type(v).__name__}"
    return None


OPTIONS = [
    Option("guide", "meanfield", f"AutoGuide by name: {sorted(GUIDES)}", check.one_of(*GUIDES)),
    Option("num_steps", 20000, "most optimisation steps (the stopping rule usually ends sooner)",
           check.positive_int),
    Option("lr", 0.01, "Adam learning rate (decays exponentially to lr/10 over num_steps)",
           check.positive_float),
    Option("num_restarts", device_count, "independent fits run in parallel; the best ELBO wins",
           check.positive_int),
    Option("chunk", 200, "steps per compiled chunk (the stopping rule looks at chunk means)",
           check.positive_int),
    Option("patience", 5, "chunks without a significant improvement before stopping", check.positive_int),
    Option("tol", 0.01, "improvement (nats) below which the ELBO counts as flat", check.non_negative_float),
    Option("refine", 40, "chunks run at lr/10 after the plateau, whose iterates are averaged (0: none)",
           check.int_between(0, 1000)),
    Option("num_particles", 1, "Monte Carlo samples per ELBO gradient", check.positive_int),
    Option("num_draws", 2000, "draws from the fitted guide (in antithetic pairs)", check.positive_int),
    Option("init", "map", "'map': start at a multi-start MAP; 'prior': at the prior median",
           check.one_of("map", "prior")),
    Option("warm_start", None, "a fitted SVI Posterior whose latent mean starts this fit",
           _warm_start_check),
]


class OrderedTraceELBO(Trace_ELBO):
    """Trace_ELBO with its terms summed in a fixed (sorted) site order.

    numpyro 0.22 sums the ELBO's terms over a Python ``set`` of site names,
    whose order follows ``PYTHONHASHSEED``: floating-point additions then run
    in another order in every process, so the compiled program (and its
    persistent-cache key) differs between processes. Same value, fixed order.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        """Negative ELBO (nats), averaged over ``num_particles`` draws; no mutable state."""
        def particle(key):
            k_model, k_guide = jax.random.split(key)
            guide_lp, guide_trace = compute_log_probs(seed(guide, k_guide), args, kwargs, param_map)
            model_lp, _ = compute_log_probs(replay(seed(model, k_model), guide_trace), args, kwargs,
                                            param_map)
            names = sorted(set(model_lp) | set(guide_lp))
            return sum((model_lp.get(n, 0.0) - guide_lp.get(n, 0.0) for n in names), jnp.zeros(()))

        if self.num_particles == 1:
            elbo = particle(rng_key)
        else:
            elbo = jnp.mean(jax.vmap(particle)(jax.random.split(rng_key, self.num_particles)))
        return {"loss": -elbo, "mutable_state": None}


def _stopped(means: list[float], ses: list[float], patience: int, tol: float) -> bool:
    """The plateau rule (see the module docstring)."""
    if len(means) <= patience:
        return False
    best_before = min(means[:-patience])
    return min(means[-patience:]) > best_before - tol - 2.0 * ses[-1]


class _Fitter:
    """Compiled SVI programs for one model structure, guide and optimiser settings."""

    def __init__(self, bound: Bound, guide_name: str, num_steps: int, lr: float, chunk: int,
                 num_particles: int, method: str, num_draws: int):
        self.bound = bound

        def prior_program(arrays, data=None):
            return bound.model(arrays).sample_params()

        # the guide learns the model's latent sites only: its prototype runs the cheap prior part
        self.guide = GUIDES[guide_name](prior_program, init_loc_fn=init_to_median(num_samples=15))
        # SVI is used for its init and its parameter constraints; the optimiser loop is ours, so the
        # learning rate can drop for the refining phase without compiling again
        self.svi = SVI(bound.program, self.guide, optax_to_numpyro(optax.sgd(lr)),
                       OrderedTraceELBO(num_particles=num_particles))
        svi = self.svi
        opt = optax.chain(optax.clip_by_global_norm(100.0), optax.scale_by_adam(),
                          optax.scale_by_learning_rate(optax.exponential_decay(lr, num_steps, 0.1)))
        self.mapper = {"parallel": jax.pmap, "vectorized": jax.vmap}.get(method, jax.vmap)
        self.proto_done = False

        def init(key, init_params, arrays, data):
            st = svi.init(key, arrays, data=data, init_params=init_params)
            raw = svi.optim.get_params(st.optim_state)
            return raw, opt.init(raw), st.rng_key

        def loss_fn(raw, key, arrays, data):
            return svi.loss.loss(key, svi.constrain_fn(raw), svi.model, svi.guide, arrays, data=data)

        def run_chunk(state, lr_scale, arrays, data):
            def step(carry, _):
                (raw, opt_state, key), total = carry
                key, sub = jax.random.split(key)
                loss, grad = jax.value_and_grad(loss_fn)(raw, sub, arrays, data)
                updates, opt_state = opt.update(grad, opt_state, raw)
                raw = optax.apply_updates(raw, jax.tree_util.tree_map(lambda u: lr_scale * u, updates))
                return ((raw, opt_state, key), jax.tree_util.tree_map(jnp.add, total, raw)), loss

            zero = jax.tree_util.tree_map(jnp.zeros_like, state[0])
            (state, total), losses = jax.lax.scan(step, (state, zero), None, length=chunk)
            return state, total, losses

        self.init = self.mapper(init, in_axes=(0, None, None, None))
        self.run_chunk = self.mapper(run_chunk, in_axes=(0, 0, None, None))
        self.draws = jax.jit(lambda raw, key, arrays, data: self._draws(raw, key, arrays, data, num_draws))

    def setup(self, arrays, data) -> None:
        """Trace the guide's prototype once (the cheap prior program, outside any transform)."""
        if not self.proto_done:
            with seed(rng_seed=0):  # the prototype's init values are replaced by init_params or the median
                self.guide._setup_prototype(arrays, data=data)
            self.proto_done = True

    def init_params(self, z: dict | None, guide_name: str) -> dict | None:
        """numpyro ``init_params`` that start the guide at unconstrained latents ``z``."""
        if z is None:
            return None
        if guide_name in ("map", "laplace"):
            proto = self.guide.prototype_trace
            from numpyro.distributions import biject_to

            return {f"{k}_auto_loc": biject_to(proto[k]["fn"].support)(jnp.asarray(z[k]))
                    for k in self.guide._init_locs}
        if guide_name in _LOC_GUIDES:
            return {"auto_loc": jnp.concatenate([jnp.ravel(jnp.asarray(z[k]))
                                                 for k in self.guide._init_locs])}
        return None

    def _draws(self, raw, key, arrays, data, n):
        """Physical draws, log importance weights (log p - log q) and the latent mean, from raw params."""
        params = self.svi.constrain_fn(raw)
        model = self.bound.model(arrays)
        guide = self.guide
        if isinstance(guide, AutoDelta):
            locs = guide.median(params)
            from numpyro.distributions import biject_to

            proto = guide.prototype_trace
            unc = {k: biject_to(proto[k]["fn"].support).inv(v) for k, v in locs.items()}
            unc_n = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), unc)
            log_w = jnp.zeros(n)
        else:
            # log q from the base draw and the flow's Jacobian: flows such as BNAF have no inverse
            base, transform = guide.get_base_dist(), guide.get_transform(params)
            # antithetic pairs (eps, -eps) of the symmetric base: each draw is still a draw from the
            # guide, and a Gaussian guide's mean in latent space is matched exactly (no Monte Carlo error)
            half = base.sample(key, ((n + 1) // 2,))
            eps = jnp.concatenate([half, -half])[:n]
            flat = transform(eps)
            log_det = transform.log_abs_det_jacobian(eps, flat)
            log_q = base.log_prob(eps) - (log_det.sum(-1) if log_det.ndim == 2 else log_det)
            unc_n = jax.vmap(guide._unpack_latent)(flat)
            pot = lambda u: potential_energy(self.bound.program, (arrays,), {"data": data}, u)  # noqa: E731
            log_w = -batched_map(pot, unc_n) - log_q
            unc = jax.tree_util.tree_map(lambda a: a.mean(0), unc_n)
        phys = batched_map(lambda u: physical_values(model, u), unc_n)
        return phys, log_w, unc


def _check(model, opts) -> list[str]:
    problems = []
    ws = opts["warm_start"]
    if ws is not None:
        wanted = sorted(s.latent for s in model.sites().values())
        have = sorted(ws.meta["latent_mean"])
        if have != wanted:
            problems.append(f"warm_start was fitted to latent sites {have}; this model has {wanted}")
        if opts["guide"] in ("iaf", "bnaf"):
            problems.append(f"warm_start cannot start a {opts['guide']!r} flow (it has no location)")
    return problems


@register("svi", OPTIONS, check=_check)
def run_svi(model, data, opts) -> RunResult:
    """Fit an AutoGuide by maximising the ELBO; draws from the fitted guide, PSIS k-hat of its fit."""
    guide_name = opts["guide"]
    restarts = opts["num_restarts"]
    key = jax.random.PRNGKey(opts["seed"])
    k_map, k_run, k_draw = jax.random.split(key, 3)
    method = choose_chain_method(restarts)
    data = jnp.asarray(data)
    bound = Bound(model)
    grads = 0
    settings = (guide_name, opts["num_steps"], opts["lr"], opts["chunk"], opts["num_particles"], method,
                opts["num_draws"])
    fitter, reused = cached("svi", (bound.key, settings), lambda: _Fitter(bound, *settings))
    record = {}
    with stopwatch() as t_init:
        z0 = None
        if opts["warm_start"] is not None:
            z0 = {k: np.asarray(v) for k, v in opts["warm_start"].meta["latent_mean"].items()}
            record["init"] = "warm_start"
        elif opts["init"] == "map" and guide_name not in ("iaf", "bnaf"):
            mode = find_mode(model, data, k_map)
            z0, grads = mode.z, mode.gradient_evals
            record.update(init="map", map=mode.record())
        else:
            record["init"] = "prior"
        fitter.setup(bound.arrays, data)
        init_params = fitter.init_params(z0, guide_name)
        states = fitter.init(jax.random.split(k_run, restarts), init_params, bound.arrays, data)
        jax.block_until_ready(states)

    chunk, patience, tol, refine = opts["chunk"], opts["patience"], opts["tol"], opts["refine"]
    trace, means, ses = [], [[] for _ in range(restarts)], [[] for _ in range(restarts)]
    refining = np.zeros(restarts, bool)
    refined = np.zeros(restarts, int)  # chunks run in the refining phase
    done = np.zeros(restarts, bool)
    acc = None
    last = None
    n_chunks = -(-opts["num_steps"] // chunk)
    bar = tqdm(total=n_chunks * chunk, desc=f"SVI {guide_name}", disable=not opts["progress"])
    with stopwatch() as t_run:
        for _ in range(n_chunks):
            scale = jnp.asarray(np.where(refining, REFINE_LR, 1.0), jnp.result_type(float))
            states, total, losses = fitter.run_chunk(states, scale, bound.arrays, data)
            losses = np.asarray(losses)
            total = jax.tree_util.tree_map(np.asarray, total)
            last = total
            trace.append(losses)
            in_refine = refining & ~done  # a restart that is done keeps its average
            if acc is None:
                acc = jax.tree_util.tree_map(np.zeros_like, total)
            acc = jax.tree_util.tree_map(
                lambda a, t, m=in_refine: a + m.reshape((-1,) + (1,) * (t.ndim - 1)) * t, acc, total)
            for r in range(restarts):
                if done[r]:
                    continue
                means[r].append(float(losses[r].mean()))
                ses[r].append(float(losses[r].std() / np.sqrt(chunk)))
                if in_refine[r]:
                    refined[r] += 1
                    done[r] = refined[r] >= refine
                elif _stopped(means[r], ses[r], patience, tol):
                    refining[r] = refine > 0
                    done[r] = refine == 0
            bar.update(chunk)
            bar.set_postfix(elbo=f"{-min(m[-1] for m in means):.4g}",
                            phase="refine" if refining.any() else "fit")
            if done.all():
                break
        jax.block_until_ready(states)
    bar.close()
    n_run = len(trace) * chunk
    grads += restarts * n_run * opts["num_particles"]
    final = np.array([np.mean(m[-max(refined[r], 1):]) for r, m in enumerate(means)])
    if not np.any(np.isfinite(final)):
        raise FitError(f"SVI diverged: the ELBO is not finite in any of the {restarts} restart(s) "
                       f"after {n_run} steps; lower lr (now {opts['lr']}) or start at the MAP (init='map')")
    final = np.where(np.isfinite(final), final, np.inf)
    best = int(np.argmin(final))
    # Polyak average of the refining phase's iterates (else of the last chunk's)
    n_avg = refined[best] * chunk if refined[best] else chunk
    source = acc if refined[best] else last
    raw = jax.tree_util.tree_map(lambda a: jnp.asarray(a[best] / n_avg), source)
    with stopwatch() as t_draw:
        phys, log_w, unc_mean = fitter.draws(raw, k_draw, bound.arrays, data)
        phys, log_w = jax.block_until_ready((phys, log_w))
    latent_mean = {k: np.asarray(v) for k, v in unc_mean.items()}
    if not all(np.all(np.isfinite(np.asarray(v))) for v in phys.values()):
        raise FitError("SVI: the fitted guide gives non-finite draws (the optimisation diverged); "
                       f"lower lr (now {opts['lr']})")
    khat = None if isinstance(fitter.guide, AutoDelta) else psis_khat(np.asarray(log_w))
    draws = {k: np.asarray(v)[None] for k, v in phys.items()}
    if guide_name == "laplace":
        draws, khat = _laplace_draws(model, data, latent_mean, opts, record)
    stop = "plateau" if done[best] else "max_steps"
    record["refine_chunks_run"] = int(refined[best])
    elbo_trace = -np.concatenate(trace, axis=1)  # (restarts, steps run)
    meta = {
        "method": "svi", "guide": guide_name, "guide_class": type(fitter.guide).__name__,
        "num_restarts": restarts, "restart_method": method, "best_restart": best,
        "restart_elbos": (-final).tolist(), "final_elbo": float(-final[best]), "steps_run": n_run,
        "num_steps": opts["num_steps"], "stop_reason": stop, "converged": stop == "plateau",
        "lr": opts["lr"], "num_particles": opts["num_particles"], "seed": opts["seed"],
        "num_draws": opts["num_draws"], "compiled_runner": "reused" if reused else "built",
        "compile_seconds": t_init.compile + t_run.compile + t_draw.compile,
        "init_seconds": t_init.run, "fit_seconds": t_run.run, "draw_seconds": t_draw.run,
        "run_seconds": t_init.run + t_run.run + t_draw.run, "gradient_evals": grads, "khat": khat,
        "elbo_trace": _thin(elbo_trace[best], 2000).tolist(),
        "latent_mean": {k: v.tolist() for k, v in latent_mean.items()}, **record,
    }
    if stop == "max_steps":
        log.warning("SVI stopped at num_steps=%d before the ELBO levelled off; raise num_steps or lr",
                    opts["num_steps"])
    return RunResult(draws=draws, meta=meta)


def _laplace_draws(model, data, z: dict, opts, record):
    """Draws from the Laplace approximation at the fitted point (unconstrained space)."""
    lap = laplace(model, data, z)
    if lap is None:
        raise RuntimeError("laplace guide: the Hessian at the fitted point is not finite")
    mean, cov, layout = lap
    rng = np.random.default_rng([opts["seed"], 11])
    flat = rng.multivariate_normal(mean, cov, size=opts["num_draws"], method="eigh")
    unc = unflatten(flat, layout)
    bound = Bound(model)
    prog, _ = cached("physical", bound.key, lambda: jax.jit(
        lambda arrays, u: batched_map(lambda x: physical_values(bound.model(arrays), x), u)))
    phys = prog(bound.arrays, {k: jnp.asarray(v) for k, v in unc.items()})
    log_p = -np.asarray(_potentials(model, data, unc), float)
    diff = flat - mean
    log_q = -0.5 * np.einsum("ni,ij,nj->n", diff, np.linalg.pinv(cov), diff)
    record["laplace_cov"] = cov.tolist()
    return {k: np.asarray(v)[None] for k, v in phys.items()}, psis_khat(log_p - log_q)


def _potentials(model, data, unc: dict):
    """Potential energy (negative log joint, unconstrained) at a batch of latent points."""
    bound = Bound(model)
    prog, _ = cached("potentials", bound.key, lambda: jax.jit(
        lambda arrays, d, u: batched_map(
            lambda x: potential_energy(bound.program, (arrays,), {"data": d}, x), u)))
    return prog(bound.arrays, jnp.asarray(data), {k: jnp.asarray(v) for k, v in unc.items()})


def _thin(x: np.ndarray, n: int) -> np.ndarray:
    return x if len(x) <= n else x[np.linspace(0, len(x) - 1, n).astype(int)]
