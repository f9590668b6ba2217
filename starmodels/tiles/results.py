"""What users read off the encoder's distribution: catalogs with uncertainties and star counts.

* :func:`mode_table`: the most probable catalog, one row per star, with the probability that the
  tile holds at least that many stars (existence probability), position and flux uncertainties
  (the encoder's standard deviations, propagated through the logit and log transforms), pixel
  positions, fluxes in electrons.
* :func:`count_interval`: the posterior number of stars brighter than a flux inside any pixel region,
  from catalogs drawn from the encoder (both checkerboard colours drawn in turn), with a central
  interval.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from starmodels.tiles.encoder import log_flux_sd, mode_catalog, point_log_flux, set_index


def mode_table(params: dict, tile_size: int, bands: tuple[str, ...],
               threshold: float | None = None) -> dict[str, np.ndarray]:
    """Per-star columns of the point catalog of one image (see
    :func:`~starmodels.tiles.encoder.mode_catalog` for ``threshold``).

    Args:
        params: :func:`~starmodels.tiles.encoder.split_params` of one image, (nth, ntw, ...).
        tile_size: pixels; bands: band names.

    Returns:
        dict of (N,) arrays: ``row``, ``col`` (0-based pixels), ``row_sd``, ``col_sd`` (pixels),
        ``p_exist`` (probability of at least ``slot + 1`` stars in the tile), ``tile_row``,
        ``tile_col``, ``slot``, and per band ``flux_<b>`` (electrons, median) and ``flux_<b>_sd``
        (electrons; the log-normal's sd for the median and the log flux's sd, truncated where the
        encoder truncates).
    """
    m = params["logits"].shape[-1] - 1
    n, locs, fluxes, probs = (np.asarray(a) for a in mode_catalog(params, m, threshold))
    idx = set_index(m)[n]                                                         # (nth, ntw, M)
    take = lambda a: np.take_along_axis(np.asarray(a), idx[..., None], axis=-2)
    loc_sd = np.exp(take(params["loc_logsd"]))
    flux_mu, flux_sd = take(point_log_flux(params)), take(log_flux_sd(params))
    tail = np.cumsum(probs[..., ::-1], axis=-1)[..., ::-1]                        # P(n >= k)
    ti, tj, s = np.nonzero(np.arange(m) < n[..., None])
    u = locs[ti, tj, s]
    # logit-normal sd by the delta method: du = u (1 - u) dz
    du = u * (1 - u) * loc_sd[ti, tj, s]
    out = {"row": (ti + u[:, 0]) * tile_size - 0.5, "col": (tj + u[:, 1]) * tile_size - 0.5,
           "row_sd": du[:, 0] * tile_size, "col_sd": du[:, 1] * tile_size, "p_exist": tail[ti, tj, s + 1],
           "tile_row": ti, "tile_col": tj, "slot": s}
    for b, name in enumerate(bands):
        mu, sd = flux_mu[ti, tj, s, b], flux_sd[ti, tj, s, b]
        out[f"flux_{name}"] = np.exp(mu)
        out[f"flux_{name}_sd"] = np.exp(mu) * np.sqrt(np.expm1(sd**2) * np.exp(sd**2))   # log-normal sd
    return out


def count_interval(catalogs, tile_size: int, *, region=None, min_flux: float = 0.0, band: int = 0,
                   prob: float = 0.9) -> dict:
    """Posterior number of stars with flux >= ``min_flux`` (electrons, band ``band``) in a region.

    Args:
        catalogs: ``(n_sources, locs, fluxes)`` tile catalogs drawn from the encoder, leading axis the
            draws (:func:`~starmodels.tiles.encoder.sample_checkerboard`, which draws the two colours
            of the checkerboard ancestrally, or :func:`~starmodels.tiles.encoder.sample_catalogs`).
        tile_size: pixels.
        region: (row0, row1, col0, col1) pixel bounds, half-open ``row0 <= row < row1``; None = all.
        prob: central interval probability.

    Returns:
        ``{"mean", "sd", "lo", "hi", "prob", "samples"}`` (counts).
    """
    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    n, locs, fluxes = (jnp.asarray(a) for a in catalogs)
    if n.ndim != 3 or n.shape[0] < 1:
        raise ValueError(f"catalogs must hold at least one draw of (nth, ntw) tiles, got n_sources of shape "
                         f"{n.shape}")
    m = locs.shape[-2]
    nth, ntw = n.shape[-2:]
    on = jnp.arange(m) < n[..., None]
    rows = (jnp.arange(nth)[:, None, None] + locs[..., 0]) * tile_size - 0.5
    cols = (jnp.arange(ntw)[None, :, None] + locs[..., 1]) * tile_size - 0.5
    keep = on & (fluxes[..., band] >= min_flux)
    if region is not None:
        r0, r1, c0, c1 = region
        keep = keep & (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
    counts = np.asarray(keep.sum(axis=(-3, -2, -1)))
    lo, hi = np.quantile(counts, [(1 - prob) / 2, (1 + prob) / 2])
    return {"mean": float(counts.mean()), "sd": float(counts.std()), "lo": float(lo), "hi": float(hi),
            "prob": prob, "samples": counts}


def true_count(n_sources, locs, fluxes, tile_size: int, *, region=None, min_flux: float = 0.0,
               band: int = 0) -> int:
    """The same count for a true tile catalog (for coverage checks on simulations)."""
    m = locs.shape[-2]
    nth, ntw = np.asarray(n_sources).shape
    on = np.arange(m) < np.asarray(n_sources)[..., None]
    rows = (np.arange(nth)[:, None, None] + np.asarray(locs)[..., 0]) * tile_size - 0.5
    cols = (np.arange(ntw)[None, :, None] + np.asarray(locs)[..., 1]) * tile_size - 0.5
    keep = on & (np.asarray(fluxes)[..., band] >= min_flux)
    if region is not None:
        r0, r1, c0, c1 = region
        keep &= (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
    return int(keep.sum())

