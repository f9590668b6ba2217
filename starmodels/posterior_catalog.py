"""Posterior star catalogs in astronomers' units, and model / residual images as FITS.

:func:`star_catalog` turns a fit of a :func:`~starmodels.starfield.star_field_model`
into an astropy ``Table``: per star, posterior mean, sd and central interval of
the flux (electrons, nanomaggies, AB-like magnitudes ``22.5 - 2.5 log10(nMgy)``)
and of the position (0-based pixels of the observation and of its parent frame,
RA/Dec through the WCS). Write it with :func:`write_catalog` (ECSV or FITS, atomically).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from starmodels.atomic import atomic_path
from starmodels.io import write_image
from starmodels.tiles.units import NMGY_ZERO_POINT  # magnitude of 1 nanomaggy


def _interval(x: np.ndarray, prob: float):
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    return x.mean(0), x.std(0, ddof=1), lo, hi


def star_catalog(post, obs, prob: float = 0.94) -> Table:
    """One row per star of a star-field posterior, with units; intervals are central ``prob``.

    Columns: ``id``; ``row``, ``col`` (0-based pixels of ``obs``) with ``_sd``;
    ``frame_row``, ``frame_col`` (the parent frame's pixels, via
    ``obs.meta["origin"]``); ``ra``, ``dec`` (deg, at the posterior mean
    position) and ``pos_sd_arcsec``; ``flux_e``, ``flux_nmgy`` and ``mag``
    with ``_sd``, ``_lo``, ``_hi``. Nanomaggies use
    ``obs.meta["nelec_per_nmgy"]`` at each star's pixel (a map or a number);
    without it those columns are left out. For MCMC, ``r_hat`` and
    ``ess_bulk`` of each star's flux are added.
    """
    draws = {k: v.reshape((-1,) + v.shape[2:]) for k, v in post.draws().items()}
    missing = [k for k in ("source.x", "source.y", "source.flux") if k not in draws]
    if missing:
        raise KeyError(f"not a star-field posterior: no {missing} in {sorted(draws)}")
    ny, nx = obs.shape
    scale = obs.pixel_scale or 1.0
    col = draws["source.x"] / scale + (nx - 1) / 2
    row = draws["source.y"] / scale + (ny - 1) / 2
    flux = draws["source.flux"]
    t = Table()
    t["id"] = np.arange(flux.shape[1])
    for name, x in (("row", row), ("col", col)):
        m, s, _, _ = _interval(x, prob)
        t[name], t[f"{name}_sd"] = m, s
        t[name].unit = t[f"{name}_sd"].unit = "pix"
    oy, ox = obs.meta.get("origin", (0, 0))
    t["frame_row"], t["frame_col"] = t["row"] + oy, t["col"] + ox
    if obs.wcs is not None:
        sky = obs.pixel_to_sky(np.asarray(t["row"]), np.asarray(t["col"]))
        t["ra"], t["dec"] = sky.ra.deg, sky.dec.deg
        t["ra"].unit = t["dec"].unit = "deg"
    t["pos_sd_arcsec"] = np.hypot(t["row_sd"], t["col_sd"]) * scale
    t["pos_sd_arcsec"].unit = "arcsec"
    columns = [("flux_e", flux, obs.unit or "electron")]
    conv = obs.meta.get("nelec_per_nmgy")
    if conv is not None:
        conv = np.asarray(conv, float)
        if conv.ndim == 2:
            r = np.clip(np.rint(t["row"]).astype(int), 0, ny - 1)
            c = np.clip(np.rint(t["col"]).astype(int), 0, nx - 1)
            conv = conv[r, c]
        nmgy = flux / conv
        columns += [("flux_nmgy", nmgy, "nmgy"),
                    ("mag", NMGY_ZERO_POINT - 2.5 * np.log10(np.clip(nmgy, 1e-30, None)), "mag")]
    for name, x, unit in columns:
        for suffix, v in zip(("", "_sd", "_lo", "_hi"), _interval(x, prob), strict=True):
            t[name + suffix] = v
            t[name + suffix].unit = unit
    if post.is_mcmc:
        table = post.summary(warn=False)
        names = [f"source.flux[{i}]" for i in range(len(t))]
        t["r_hat"] = table.loc[names, "r_hat"].to_numpy()
        t["ess_bulk"] = table.loc[names, "ess_bulk"].to_numpy()
    t.meta.update({"interval": prob, "method": post.method, "band": obs.meta.get("band", ""),
                   "origin": list(obs.meta.get("origin", (0, 0)))})
    return t


def write_catalog(table: Table, path, overwrite: bool = True) -> Path:
    """Write a catalog atomically (format from the suffix: ``.ecsv``, ``.fits``, ``.csv``); its path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    fmt = {".ecsv": "ascii.ecsv", ".fits": "fits", ".csv": "ascii.csv"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"catalog file {path}: suffix must be .ecsv, .fits or .csv")
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt)
    return path


def write_model_images(path, model, obs, params, overwrite: bool = True):
    """FITS with DATA, MODEL (expected counts at ``params``) and RESIDUAL, each with ``obs``'s WCS."""
    import jax.numpy as jnp

    mu = np.asarray(model.render({k: jnp.asarray(v) for k, v in params.items()}), float)
    data = np.where(obs.use, obs.data, np.nan)
    return write_image(path, wcs=obs.wcs, overwrite=overwrite, DATA=data, MODEL=mu, RESIDUAL=data - mu)
