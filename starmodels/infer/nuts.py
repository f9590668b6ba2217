"""NUTS runner: chains across host devices, warmup and sampling timed apart."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS

from starmodels.infer.devices import choose_chain_method, device_count
from starmodels.infer.map import find_map, laplace_inverse_mass
from starmodels.infer.timing import stopwatch

log = logging.getLogger("starmodels")

_EXTRA = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy",
          "adapt_state.step_size")
MAP_STARTS, MAP_STEPS = 4, 400
INIT_JITTER = 0.1  # sd of the per-chain offset from the MAP point, in latent (O(1)) units


def _init_params(model, data, key, chains, init, dense_mass):
    """Per-chain unconstrained starting points, an initial inverse mass matrix, and the
    gradient evaluations spent finding them.

    ``init="map"``: chains start jittered around the MAP point and the mass
    matrix starts at the inverse Hessian there (a Laplace approximation), so
    warmup begins already adapted. ``init="prior"``: numpyro's defaults.
    """
    if init == "prior":
        return None, None, 0
    if init != "map":
        raise ValueError(f"init must be 'map' or 'prior', got {init!r}")
    k_map, k_jit = jax.random.split(key)
    z, u, info = find_map(model, data, k_map, starts=MAP_STARTS, steps=MAP_STEPS)
    log.info("MAP start: log joint %.2f", -u)
    inv_mass = laplace_inverse_mass(info.potential_fn, z, dense=dense_mass)
    leaves, tree = jax.tree_util.tree_flatten(z)
    keys = jax.random.split(k_jit, len(leaves))
    jittered = [
        leaf[None] + INIT_JITTER * jax.random.normal(k, (chains,) + jnp.shape(leaf))
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    init = jax.tree_util.tree_unflatten(tree, jittered)
    if chains == 1:
        init = jax.tree_util.tree_map(lambda a: a[0], init)
    return init, inv_mass, MAP_STARTS * MAP_STEPS


def _devices_used(state) -> int:
    leaf = jax.tree_util.tree_leaves(state)[0]
    return len(getattr(leaf, "sharding", None).device_set) if hasattr(leaf, "sharding") else 1


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
        init_params, inv_mass, map_grads = _init_params(model, data, k_init, chains, init, dense_mass)
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
        "gradient_evals": map_grads + int(warm_steps.sum()) + sample_grads,
        "gradient_evals_sampling": sample_grads,
        "divergences": int(stats["diverging"].sum()),
    }
    return draws, stats, meta
