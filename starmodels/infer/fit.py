"""``fit``: the one front door to every inference method (a lookup in the runner registry)."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Mapping
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np

from starmodels.infer.batched import batched_map
from starmodels.infer.registry import get_runner
from starmodels.protocol import check_model, labels_of
from starmodels.results import Posterior, build_idata
from starmodels.startup import compile_cache_dir

log = logging.getLogger("starmodels")

_PACKAGES = ("jax", "numpyro", "dLux", "arviz", "chainconsumer", "equinox", "optax", "starmodels")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except Exception:  # pragma: no cover - package not installed as a distribution
            out[pkg] = "unknown"
    return out


def pointwise_log_likelihood(model, data, draws) -> np.ndarray:
    """Log-likelihood of each datum at every draw: (chain, draw, *data shape), via the model protocol."""
    from starmodels.infer.compiled import Bound, cached

    bound = Bound(model)
    prog, _ = cached("loglik", bound.key, lambda: jax.jit(
        lambda arrays, d, flat: batched_map(lambda p: bound.model(arrays).log_likelihood(p, d), flat)))
    flat = {k: jnp.asarray(v.reshape((-1,) + v.shape[2:])) for k, v in draws.items()}
    lp = np.asarray(prog(bound.arrays, jnp.asarray(data), flat))
    chains, n = next(iter(draws.values())).shape[:2]
    return lp.reshape((chains, n) + lp.shape[1:])


def _check_truth(model, truth) -> dict | None:
    """Truth values as lists, after checking names, shapes and finiteness against the model's sites."""
    if truth is None:
        return None
    if not isinstance(truth, Mapping):
        raise TypeError(f"truth must be a dict of site name -> value, got {type(truth).__name__}")
    sites = model.sites()
    problems = []
    unknown = sorted(set(truth) - set(sites))
    if unknown:
        problems.append(f"{unknown} are not sampled sites of {model.name!r} (sites: {list(sites)})")
    for name, value in truth.items():
        if name not in sites:
            continue
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            problems.append(f"{name}: {value!r} is not a number or array of numbers")
            continue
        if arr.shape != sites[name].shape:
            problems.append(f"{name} has shape {arr.shape}, the site has shape {sites[name].shape}")
        elif not np.all(np.isfinite(arr)):
            problems.append(f"{name} is not finite")
    if problems:
        raise ValueError("truth: " + "; ".join(problems))
    return {k: np.asarray(v).tolist() for k, v in truth.items()}


def fit(model, data, method: str = "nuts", *, seed: int = 0, progress: bool = True, x64: bool = False,
        log_likelihood: bool = False, truth: dict | None = None, **options) -> Posterior:
    """Fit ``model`` (anything satisfying :class:`starmodels.protocol.Model`) to ``data``.

    ``method`` names a registered runner (:func:`starmodels.methods` lists
    them: ``nuts``, ``svi``, ``grid``, ``amortized``); ``options`` are that
    runner's options in one vocabulary (``num_draws``, ``num_warmup``,
    ``num_chains``, ``num_steps``, ...; :func:`starmodels.method_options`
    describes them). Every option and the data are checked before any work:
    an unknown or out-of-range option raises
    :class:`~starmodels.infer.registry.OptionError`, bad data
    :class:`~starmodels.DataError`. ``seed`` seeds every random number (same
    seed, same draws). ``x64`` runs in double precision (bright sources).
    ``log_likelihood`` adds the pointwise log-likelihood group (one value per
    pixel per draw). ``truth`` (physical values by site, optional) is stored
    for plots and checks. Returns a :class:`~starmodels.Posterior` whose
    ``meta`` holds timings (``compile_seconds``, ``run_seconds``,
    ``wall_seconds``), settings, versions and the compilation cache folder.
    """
    t0 = time.perf_counter()
    runner = get_runner(method)
    check_model(model)
    opts = runner.resolve({"seed": seed, "progress": progress, **options})
    runner.check_model(model, opts)
    for name, value, ok in (("x64", x64, isinstance(x64, bool)),
                            ("log_likelihood", log_likelihood, isinstance(log_likelihood, bool))):
        if not ok:
            raise ValueError(f"{name} must be True or False, got {value!r}")
    truth_record = _check_truth(model, truth)
    clean = model.check_data(data)
    ctx = jax.enable_x64(True) if x64 else contextlib.nullcontext()
    with ctx:
        result = runner.run(model, clean, opts)
        ll = pointwise_log_likelihood(model, clean, result.draws) if log_likelihood else None
    order = [k for k in model.sites() if k in result.draws]  # program order (compiled outputs come sorted)
    draws = {k: result.draws[k] for k in order + [k for k in result.draws if k not in order]}
    labels = labels_of(model)
    meta = {**result.meta, "model": model.name, "x64": x64, "labels": labels, "versions": versions(),
            "wall_seconds": time.perf_counter() - t0, "compile_cache": _cache_record()}
    if truth_record is not None:
        meta["truth"] = truth_record
    idata = build_idata(draws, labels, result.sample_stats, observed=np.asarray(data),
                        log_likelihood=ll)
    post = Posterior(idata=idata, meta=meta)
    log.info("%s: %s, %d draws in %.1f s (%.1f s compiling)", model.name, method,
             idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"], meta["wall_seconds"],
             meta.get("compile_seconds", 0.0))
    return post


def _cache_record() -> str | None:
    folder = compile_cache_dir()
    return None if folder is None else str(folder)
