"""NUTS runner: chains across host devices, warmup and sampling timed apart."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS

from starmodels.infer.devices import choose_chain_method, device_count
from starmodels.infer.map import find_map, laplace
from starmodels.infer.timing import stopwatch

log = logging.getLogger("starmodels")

_EXTRA = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy",
          "adapt_state.step_size")
MAP_STARTS, MAP_STEPS = 16, 500
INIT_SPREAD = 2.0  # chains start at draws from the Laplace approximation widened this much


def _init_params(model, data, key, chains, init, dense_mass):
    """Per-chain unconstrained starting points, an initial inverse mass matrix, and a
    record of the initialisation (gradient evaluations, MAP diagnostics).

    ``init="map"``: a vectorised multi-start MAP search, then each chain starts
    at a draw from the Laplace approximation there (widened by
    ``INIT_SPREAD``) and the mass matrix starts at its covariance, so warmup
    begins nearly adapted. ``init="prior"``: numpyro's defaults.
    """
    if init == "prior":
        return None, None, {"gradient_evals": 0}
    if init != "map":
        raise ValueError(f"init must be 'map' or 'prior', got {init!r}")
    k_map, k_init = jax.random.split(key)
    res = find_map(model, data, k_map, starts=MAP_STARTS, steps=MAP_STEPS)
    log.info("MAP: log joint %.2f, reached by %d of %d starts", -res.potential, res.n_best, MAP_STARTS)
    record = {"gradient_evals": res.gradient_evals, "map_log_joint": -res.potential,
              "map_starts": MAP_STARTS, "map_starts_at_best": res.n_best}
    lap = laplace(res.potential_fn, res.z)
    if lap is None:
        log.warning("Hessian at the MAP is not finite; chains start at the MAP, identity mass matrix")
        init = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (chains,) + jnp.shape(a)), res.z)
        inv_mass = None
    else:
        names, mean, cov, unravel = lap
        chol = jnp.linalg.cholesky(cov + 1e-12 * jnp.eye(len(mean)))
        eps = jax.random.normal(k_init, (chains, len(mean)))
        flat = mean + INIT_SPREAD * eps @ chol.T
        init = jax.vmap(lambda x: dict(zip(names, unravel(x), strict=True)))(flat)
        inv_mass = {names: cov if dense_mass else jnp.diag(cov)}
    if chains == 1:
        init = jax.tree_util.tree_map(lambda a: a[0], init)
    return init, inv_mass, record


def _devices_used(state) -> int:
    """How many devices hold the final chain states (2 after a pmap over 2 devices)."""
    leaf = jax.tree_util.tree_leaves(state)[0]
    return len(leaf.sharding.device_set) if hasattr(leaf, "sharding") else 1


def run_nuts(model, data, *, chains: int, warmup: int, samples: int, seed: int,
             dense_mass: bool = True, init: str = "map", target_accept: float = 0.85,
             max_tree_depth: int = 10, chain_method: str | None = None, progress: bool = True):
    """Sample ``model`` given validated ``data`` with NUTS.

    Returns ``(draws, sample_stats, meta)``: draws by site (chain, draw, ...),
    ArviZ-named sample statistics, and run metadata (timings in seconds,
    gradient evaluations, devices, chain method).
    """
    if min(chains, warmup, samples) < 1:
        raise ValueError(f"chains, warmup and samples must be >= 1, got {chains}, {warmup}, {samples}")
    method = choose_chain_method(chains, chain_method)
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    data = jnp.asarray(data)

    with stopwatch() as t_init:
        init_params, inv_mass, init_record = _init_params(model, data, k_init, chains, init,
                                                          dense_mass)
        jax.block_until_ready(init_params)

    kernel = NUTS(model, dense_mass=dense_mass, target_accept_prob=target_accept,
                  max_tree_depth=max_tree_depth, inverse_mass_matrix=inv_mass)
    mcmc = MCMC(kernel, num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=method, progress_bar=progress)
    if mcmc.chain_method != method:  # numpyro may downgrade; we never accept that silently
        raise RuntimeError(f"numpyro changed chain_method {method!r} -> {mcmc.chain_method!r}")

    with stopwatch() as t_warm:
        mcmc.warmup(k_run, data=data, init_params=init_params, extra_fields=("num_steps",),
                    collect_warmup=True)
        warm_steps = np.asarray(jax.block_until_ready(mcmc.get_extra_fields()["num_steps"]))
    with stopwatch() as t_samp:
        mcmc.run(mcmc.post_warmup_state.rng_key, data=data, extra_fields=_EXTRA)
        raw = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}

    names = list(model.priors())
    draws = {k: np.asarray(raw[k]) for k in names}
    steps = extra["num_steps"]
    stats = {
        "diverging": extra["diverging"].astype(bool),
        "n_steps": steps,
        "tree_depth": np.ceil(np.log2(steps + 1)).astype(int),
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "lp": -extra["potential_energy"],
        "step_size": extra["adapt_state.step_size"],
    }
    sample_grads = int(steps.sum())
    meta = {
        "method": "nuts", "chains": chains, "warmup": warmup, "samples": samples, "seed": seed,
        "devices": device_count(), "chain_method": method,
        "devices_used": _devices_used(mcmc.last_state),
        "dense_mass": dense_mass, "init": init, "target_accept": target_accept,
        "compile_seconds": t_init.compile + t_warm.compile + t_samp.compile,
        "init_seconds": t_init.run, "warmup_seconds": t_warm.run, "sampling_seconds": t_samp.run,
        "gradient_evals": init_record.pop("gradient_evals") + int(warm_steps.sum()) + sample_grads,
        "gradient_evals_sampling": sample_grads,
        "divergences": int(stats["diverging"].sum()),
        **init_record,
    }
    return draws, stats, meta
