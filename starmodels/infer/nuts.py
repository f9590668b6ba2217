"""NUTS: numpyro's kernel driven in compiled chunks, chains across host devices.

The sampler is numpyro's NUTS (``numpyro.infer.hmc.hmc``: windowed warmup
adapting the step size and a dense or diagonal mass matrix). We drive it
ourselves: one compiled program runs a chunk of iterations of every chain
(``pmap`` over devices, or ``vmap`` on one), the same program for warmup and
sampling, with the model's arrays and the data as arguments. So a fit
compiles two programs (chain init and the chunk), a second fit of a model of
the same structure on data of the same shape compiles none, and the progress
bar, timings and warmup/sampling split come for free.

Initialisation ``init="map"`` (default): a multi-start mode search
(:func:`starmodels.infer.map.find_mode`), then every chain starts at a draw
from the Laplace approximation there (widened by ``INIT_SPREAD``) and the
mass matrix starts at its covariance, so warmup begins nearly adapted.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import initialize_model, potential_energy
from tqdm.auto import tqdm

from starmodels.infer import options as check
from starmodels.infer.compiled import Bound, cached
from starmodels.infer.devices import choose_chain_method, device_count
from starmodels.infer.latents import physical_values
from starmodels.infer.map import find_mode, laplace, unflatten
from starmodels.infer.registry import Option, RunResult, register
from starmodels.infer.timing import stopwatch

log = logging.getLogger("starmodels")

INIT_SPREAD = 2.0  # chains start at draws from the Laplace approximation widened this much
CHUNK = 50  # iterations per compiled call (progress bar granularity)

OPTIONS = [
    Option("num_chains", device_count, "chains (default: one per host device)", check.positive_int),
    Option("num_warmup", 1000, "warmup iterations per chain (adaptation; discarded)", check.positive_int),
    Option("num_draws", 1000, "draws kept per chain", check.positive_int),
    Option("dense_mass", True, "adapt a dense (True) or diagonal mass matrix", check.boolean),
    Option("init", "map", "'map': start near a multi-start MAP with a Laplace mass matrix; 'prior': "
           "numpyro's uniform init", check.one_of("map", "prior")),
    Option("target_accept", 0.85, "target acceptance probability of the step-size adaptation",
           check.open_unit),
    Option("max_tree_depth", 10, "maximum NUTS tree depth (2**depth leapfrog steps)",
           check.int_between(1, 15)),
    Option("chain_method", None, "'parallel' (one device per chain), 'vectorized' or 'sequential'; "
           "default: parallel when there are enough devices",
           check.optional(check.one_of("parallel", "vectorized", "sequential"))),
    Option("map_starts", 16, "starts of the MAP search (init='map')", check.positive_int),
]

_FIELDS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")


class _Sampler:
    """The compiled init and chunk programs for one model structure and one set of NUTS settings."""

    def __init__(self, bound: Bound, method: str, num_warmup: int, dense_mass: bool,
                 target_accept: float, max_tree_depth: int):
        self.bound = bound

        # jitted: the tree builder's several call sites reuse one traced potential (tracing time)
        potential = jax.jit(lambda z, arrays, data: potential_energy(bound.program, (arrays,),
                                                                     {"data": data}, z))

        def gen(arrays, data):
            return lambda z: potential(z, arrays, data)

        init_kernel, sample_kernel = hmc(potential_fn_gen=gen, algo="NUTS")

        def init(z, inv_mass, key, arrays, data):
            return init_kernel(z, num_warmup, inverse_mass_matrix=inv_mass, dense_mass=dense_mass,
                               target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                               model_args=(arrays, data), rng_key=key)

        def chunk(state, n, arrays, data):
            model = bound.model(arrays)
            proto = physical_values(model, state.z)
            buf = ({k: jnp.zeros((CHUNK, *jnp.shape(v)), jnp.result_type(v)) for k, v in proto.items()},
                   {"diverging": jnp.zeros(CHUNK, bool), "num_steps": jnp.zeros(CHUNK, jnp.int32),
                    **{f: jnp.zeros(CHUNK, jnp.result_type(float)) for f in _FIELDS[2:]}})

            def body(i, carry):
                st, (draws, stats) = carry
                st = sample_kernel(st, model_args=(arrays, data))
                phys = physical_values(model, st.z)
                rec = {"diverging": st.diverging, "num_steps": st.num_steps.astype(jnp.int32),
                       "accept_prob": st.accept_prob, "energy": st.energy,
                       "potential_energy": st.potential_energy, "step_size": st.adapt_state.step_size}
                draws = {k: v.at[i].set(phys[k]) for k, v in draws.items()}
                stats = {k: v.at[i].set(rec[k].astype(v.dtype)) for k, v in stats.items()}
                return st, (draws, stats)

            return jax.lax.fori_loop(0, n, body, (state, buf))

        if method == "parallel":
            self.init = jax.pmap(init, in_axes=(0, None, 0, None, None))
            self.chunk = jax.pmap(chunk, in_axes=(0, None, None, None))
        else:  # vectorized or sequential: every chain on one device
            self.init = jax.jit(jax.vmap(init, in_axes=(0, None, 0, None, None)))
            self.chunk = jax.jit(jax.vmap(chunk, in_axes=(0, None, None, None)))


def _init_points(model, data, key, chains, opts, rng):
    """Per-chain unconstrained starts (chains, ...), an initial inverse mass matrix, and a record."""
    if opts["init"] == "prior":
        info = initialize_model(jax.random.split(key, chains), model, model_kwargs={"data": data},
                                init_strategy=init_to_uniform)
        return info.param_info.z, None, {"init": "prior"}
    mode = find_mode(model, data, key, starts=opts["map_starts"])
    record = {"init": "map", "map": mode.record(), "map_z": mode.z}
    lap = laplace(model, data, mode.z)
    if lap is None:
        log.warning("Hessian at the MAP is not finite; chains start at the MAP, identity mass matrix")
        z = {k: np.broadcast_to(v, (chains, *np.shape(v))) for k, v in mode.z.items()}
        return z, None, record
    mean, cov, layout = lap
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mean)))
    flat = mean + INIT_SPREAD * rng.standard_normal((chains, len(mean))) @ chol.T
    inv_mass = cov if opts["dense_mass"] else np.diag(cov).copy()
    return unflatten(flat, layout), inv_mass, record


def _check(model, opts) -> list[str]:
    if opts["chain_method"] == "parallel" and opts["num_chains"] > device_count():
        return [f"chain_method='parallel' needs num_chains <= {device_count()} (the host devices; set "
                "STARMODELS_HOST_DEVICES before importing starmodels for more)"]
    return []


@register("nuts", OPTIONS, check=_check)
def run_nuts(model, data, opts) -> RunResult:
    """Sample the posterior with NUTS: ``num_chains`` chains of ``num_warmup`` + ``num_draws`` iterations."""
    chains = opts["num_chains"]
    method = choose_chain_method(chains, opts["chain_method"])
    key = jax.random.PRNGKey(opts["seed"])
    k_init, k_run = jax.random.split(key)
    rng = np.random.default_rng([opts["seed"], 7])
    data = jnp.asarray(data)
    bound = Bound(model)

    with stopwatch() as t_init:
        z0, inv_mass, record = _init_points(model, data, k_init, chains, opts, rng)
    settings = (method, opts["num_warmup"], opts["dense_mass"], opts["target_accept"],
                opts["max_tree_depth"])
    sampler, reused = cached("nuts", (bound.key, settings), lambda: _Sampler(bound, *settings))
    inv = None if inv_mass is None else jnp.asarray(inv_mass)
    z0 = {k: jnp.asarray(v) for k, v in z0.items()}
    keys = jax.random.split(k_run, chains)
    with stopwatch() as t_start:
        state = jax.block_until_ready(sampler.init(z0, inv, keys, bound.arrays, data))
        bad = ~np.isfinite(np.asarray(state.potential_energy))
        if bad.any() and "map_z" in record:
            # a Laplace draw can land outside the support when the Hessian at the MAP is nearly singular
            log.warning("chain(s) %s start where the log density is not finite (the Laplace covariance at "
                        "the MAP is nearly singular, largest variance %.3g); all chains start at the MAP "
                        "with an identity mass matrix", np.flatnonzero(bad).tolist(),
                        float(np.max(np.diag(np.atleast_2d(inv_mass)))) if inv_mass is not None else np.nan)
            record["init"] = "map (Laplace start not finite)"
            inv = None
            z0 = {k: jnp.asarray(np.broadcast_to(v, (chains, *np.shape(v))))
                  for k, v in record["map_z"].items()}
            state = jax.block_until_ready(sampler.init(z0, inv, keys, bound.arrays, data))
            bad = ~np.isfinite(np.asarray(state.potential_energy))
        if bad.any():
            raise FloatingPointError(
                f"NUTS cannot start: the log density is not finite at the starting point of chain(s) "
                f"{np.flatnonzero(bad).tolist()} (init {record['init']!r}); check the data and the priors, "
                "or pass init='prior'")
    record.pop("map_z", None)

    warmup, draws_n = opts["num_warmup"], opts["num_draws"]
    total = warmup + draws_n
    draws, stats = [], []
    bar = tqdm(total=total, desc=f"NUTS {chains} chain(s)", disable=not opts["progress"])
    done = 0
    timers = {"warmup": [], "sampling": []}
    while done < total:
        n = min(CHUNK, (warmup - done) if done < warmup else total - done)
        phase = "warmup" if done < warmup else "sampling"
        with stopwatch() as t:
            state, (d, s) = sampler.chunk(state, n, bound.arrays, data)
            d, s = jax.block_until_ready((d, s))
        timers[phase].append(t)
        if phase == "sampling":
            draws.append({k: np.asarray(v)[:, :n] for k, v in d.items()})
        stats.append({k: np.asarray(v)[:, :n] for k, v in s.items()})
        done += n
        bar.update(n)
        bar.set_postfix(phase=phase, step_size=f"{float(np.mean(stats[-1]['step_size'][:, -1])):.3g}",
                        divergences=int(sum(x["diverging"].sum() for x in stats)))
    bar.close()

    out = {k: np.concatenate([d[k] for d in draws], axis=1) for k in draws[0]}
    nonfinite = {k: int((~np.isfinite(v)).sum()) for k, v in out.items() if not np.all(np.isfinite(v))}
    if nonfinite:
        log.warning("NUTS draws are not finite (%s): the chains left the region where the log density is "
                    "defined; do not use this result (see meta['nonfinite_draws'])", nonfinite)
    all_stats = {k: np.concatenate([s[k] for s in stats], axis=1) for k in stats[0]}
    post = {k: v[:, warmup:] for k, v in all_stats.items()}
    steps = post["num_steps"]
    sample_stats = {
        "diverging": post["diverging"].astype(bool), "n_steps": steps,
        "tree_depth": np.ceil(np.log2(steps + 1)).astype(int), "acceptance_rate": post["accept_prob"],
        "energy": post["energy"], "lp": -post["potential_energy"], "step_size": post["step_size"],
    }
    compile_s = t_init.compile + t_start.compile + sum(t.compile for ts in timers.values() for t in ts)
    warm_s = sum(t.run for t in timers["warmup"])
    samp_s = sum(t.run for t in timers["sampling"])
    map_evals = record.get("map", {}).get("gradient_evals", 0)
    meta = {
        "method": "nuts", "num_chains": chains, "num_warmup": warmup, "num_draws": draws_n,
        "seed": opts["seed"], "devices": device_count(), "chain_method": method,
        "devices_used": _devices_used(state), "dense_mass": opts["dense_mass"],
        "target_accept": opts["target_accept"], "max_tree_depth": opts["max_tree_depth"],
        "compiled_runner": "reused" if reused else "built",
        "compile_seconds": compile_s, "init_seconds": t_init.run + t_start.run, "warmup_seconds": warm_s,
        "sampling_seconds": samp_s, "run_seconds": t_init.run + t_start.run + warm_s + samp_s,
        "gradient_evals": int(map_evals + all_stats["num_steps"].sum()),
        "gradient_evals_sampling": int(steps.sum()),
        "divergences": int(sample_stats["diverging"].sum()),
        "max_tree_depth_hits": int((sample_stats["tree_depth"] >= opts["max_tree_depth"]).sum()),
        "nonfinite_draws": nonfinite,
        **record,
    }
    return RunResult(draws=out, meta=meta, sample_stats=sample_stats)


def _devices_used(state) -> int:
    """How many devices hold the final chain states (2 after a pmap over 2 devices)."""
    leaf = jax.tree_util.tree_leaves(state)[0]
    return len(leaf.sharding.device_set) if hasattr(leaf, "sharding") else 1
