"""``fit``: the one front door to every inference method."""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from importlib.metadata import version

import jax
import numpy as np

from starmodels.results import Posterior, build_idata

log = logging.getLogger("starmodels")

METHODS = ("nuts", "svi", "grid")
_PACKAGES = ("jax", "numpyro", "dLux", "arviz", "chainconsumer", "equinox", "starmodels")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except Exception:  # pragma: no cover - package not installed as a distribution
            out[pkg] = "unknown"
    return out


def pointwise_log_likelihood(model, data, draws) -> np.ndarray:
    """Per-pixel log-likelihood (chain, draw, y, x) at every posterior draw."""
    noise_names = [f"noise.{k}" for k in model.noise.priors()]

    @jax.jit
    def one(params):
        noise_p = {k.split(".", 1)[1]: params[k] for k in noise_names}
        return model.noise.log_prob(model.render(params), data, noise_p)

    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in draws.items()}
    lp = jax.lax.map(one, flat)
    chains, n = next(iter(draws.values())).shape[:2]
    return np.asarray(lp).reshape((chains, n) + lp.shape[1:])


def fit(model, data, method: str = "nuts", *, chains: int | None = None, warmup: int = 1000,
        samples: int = 1000, seed: int = 0, x64: bool = False, log_likelihood: bool = False,
        progress: bool = True, truth: dict | None = None, **options) -> Posterior:
    """Fit ``model`` (a :class:`~starmodels.forward.ForwardModel`) to ``data`` (counts per pixel).

    method ``"nuts"``: ``chains`` (default: one per host device), ``warmup`` and
    ``samples`` per chain; options ``dense_mass``, ``init``, ``target_accept``,
    ``max_tree_depth``, ``chain_method``.
    method ``"svi"``: ``samples`` draws from the fitted guide; options ``guide``
    (see ``starmodels.infer.svi.GUIDES``), ``steps``, ``lr``, ``restarts``
    (default: one per host device), ``num_particles``, ``init``, ``warm_start``.
    method ``"grid"``: the exact posterior of models with one or two free
    parameters per independent block (see :mod:`starmodels.infer.grid`);
    ``samples`` draws; options ``points``, ``refine``.
    x64 runs in double precision (bright sources). log_likelihood adds the
    per-pixel log-likelihood group. truth (optional) is stored for plots and
    checks.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "nuts" and chains is not None:
        raise ValueError(f"chains applies to NUTS; {method} has none (SVI runs restarts= instead)")
    from starmodels.infer.devices import device_count

    clean = model.check_data(data)
    ctx = jax.enable_x64(True) if x64 else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        if method == "nuts":
            from starmodels.infer.nuts import run_nuts

            draws, stats, meta = run_nuts(model, clean, chains=chains or device_count(),
                                          warmup=warmup, samples=samples, seed=seed,
                                          progress=progress, **options)
        elif method == "grid":
            from starmodels.infer.grid import run_grid

            draws, meta = run_grid(model, clean, draws=samples, seed=seed, **options)
            stats = None
        else:
            from starmodels.infer.svi import run_svi

            options.setdefault("restarts", device_count())
            draws, meta = run_svi(model, jax.numpy.asarray(clean), draws=samples, seed=seed,
                                  progress=progress, **options)
            stats = None
        ll = pointwise_log_likelihood(model, clean, draws) if log_likelihood else None
    meta.update(model=model.name, x64=x64, wall_seconds=time.perf_counter() - t0,
                labels=model.labels(), versions=versions())
    if truth is not None:
        meta["truth"] = {k: np.asarray(v).tolist() for k, v in truth.items()}
    idata = build_idata(draws, model.labels(), stats, observed=np.asarray(data), log_likelihood=ll)
    post = Posterior(idata=idata, meta=meta)
    log.info("%s: %s, %d draws in %.1f s (%.1f s compiling)", model.name, method,
             idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"], meta["wall_seconds"],
             meta["compile_seconds"])
    return post
