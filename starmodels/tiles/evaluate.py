"""Scoring a tile model on fields simulated from its own prior, and choosing its decision threshold there.

The score is the StarNet rule (:func:`starmodels.tiles.metrics.score`): estimates and true stars
brighter than ``flux_limit`` (electrons, reference band) inside a border, a hit within 0.5 pixel and
0.5 magnitude, counts pooled over the simulated fields. :func:`choose_threshold` picks the existence
probability a star needs by this score on simulations (never on a truth catalog of real data); the same
threshold makes the checkerboard's first-colour catalog that the second colour is conditioned on.
"""

from __future__ import annotations

import jax
import numpy as np

from starmodels.tiles.catalog import TileCatalog, tile_to_full
from starmodels.tiles.encoder import encode_checkerboard, mode_catalog, sample_checkerboard
from starmodels.tiles.metrics import flux_to_mag, score
from starmodels.tiles.simulate import simulate_batch

THRESHOLDS = (None, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def full_catalog(n, locs, fluxes, tile_size: int, bands) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (N, 2) and fluxes (N, B) electrons of the stars of one tile catalog."""
    fc = tile_to_full(TileCatalog(n_sources=n, locs=locs, fluxes=fluxes, tile_size=tile_size, bands=bands))
    k = int(fc.n_sources)
    return np.asarray(fc.plocs)[:k], np.asarray(fc.fluxes)[:k]


def _inside(pos, size, border):
    return np.all((pos > border) & (pos < size - border), axis=1)


def simulate_fields(tm, seed: int, images: int = 16, tiles: int = 53) -> dict:
    """``images`` fields of ``tiles`` x ``tiles`` tiles simulated from the tile model's prior."""
    simulate = jax.jit(lambda k: simulate_batch(k, tm.prior, tm.simulator, images, (tiles, tiles)))
    return simulate(jax.random.PRNGKey(seed))


def encode_fields(tm, sims: dict, threshold) -> dict:
    """The encoder's split parameters of every simulated field (leading axis), the checkerboard's first
    colour catalog made with ``threshold`` (see :func:`~starmodels.tiles.encoder.encode_checkerboard`)."""
    return encode_checkerboard(tm.encoder, sims["image"], sims["background_estimate"],
                               tm.prior.log_flux_bounds(), threshold)


def pooled_scores(tm, sims: dict, threshold, flux_limit: float, border: float = 8.0) -> dict:
    """Precision, recall and F1 (StarNet rule) of the point catalogs at ``threshold``, pooled over the
    simulated fields."""
    params = encode_fields(tm, sims, threshold)
    n, locs, fluxes, _ = mode_catalog(params, tm.encoder.max_sources, threshold)
    images = n.shape[0]
    size = n.shape[1] * tm.prior.tile_size
    tot = {"tp_est": 0, "n_est": 0, "tp_true": 0, "n_true": 0}
    for i in range(images):
        ep, ef = full_catalog(n[i], locs[i], fluxes[i], tm.prior.tile_size, tm.prior.bands)
        tp, tf = full_catalog(sims["n_sources"][i], sims["locs"][i], sims["fluxes"][i], tm.prior.tile_size,
                              tm.prior.bands)
        ke = _inside(ep, size, border) & (ef[:, 0] >= flux_limit)
        kt = _inside(tp, size, border) & (tf[:, 0] >= flux_limit)
        s = score((ep[ke], flux_to_mag(ef[ke, 0])), (tp[kt], flux_to_mag(tf[kt, 0])))
        for k in tot:
            tot[k] += int(getattr(s, k))
    p, r = tot["tp_est"] / max(tot["n_est"], 1), tot["tp_true"] / max(tot["n_true"], 1)
    return {"images": images, "size_pixels": size, "threshold": threshold, "flux_limit": flux_limit, **tot,
            "precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0}


def choose_threshold(tm, flux_limit: float, seed: int = 0, images: int = 16, tiles: int = 53,
                     thresholds=THRESHOLDS) -> dict:
    """The decision threshold with the best simulated F1; returns it with every candidate's score."""
    sims = simulate_fields(tm, seed, images, tiles)
    scores = [pooled_scores(tm, sims, t, flux_limit) for t in thresholds]
    best = max(scores, key=lambda s: s["f1"])
    return {"threshold": best["threshold"], "flux_limit": flux_limit, "seed": seed,
            "candidates": [{k: s[k] for k in ("threshold", "precision", "recall", "f1")} for s in scores]}


def count_coverage(tm, sims: dict, seed: int = 0, limits=(1000.0, 3000.0, 10000.0), prob: float = 0.9,
                   border: float = 8.0, num_samples: int = 500) -> dict:
    """Coverage of the encoder's central ``prob`` intervals for the number of stars brighter than each
    limit (electrons, reference band) inside the border, over simulated fields (catalogs drawn with
    :func:`~starmodels.tiles.encoder.sample_checkerboard`); also the mean interval width and the mean
    error of the posterior mean count."""
    from starmodels.tiles.results import count_interval, true_count

    images = sims["n_sources"].shape[0]
    size = sims["n_sources"].shape[1] * tm.prior.tile_size
    region = (border + 0.5, size - border - 0.5, border + 0.5, size - border - 0.5)
    draws = [sample_checkerboard(jax.random.PRNGKey(seed + i), tm.encoder, sims["image"][i],
                                 sims["background_estimate"][i], num_samples, tm.prior.log_flux_bounds())
             for i in range(images)]
    out = {}
    for lim in limits:
        inside, widths, errors = [], [], []
        for i in range(images):
            c = count_interval(draws[i], tm.prior.tile_size, region=region, min_flux=lim, prob=prob)
            t = true_count(sims["n_sources"][i], sims["locs"][i], sims["fluxes"][i], tm.prior.tile_size,
                           region=region, min_flux=lim)
            inside.append(c["lo"] <= t <= c["hi"])
            widths.append(c["hi"] - c["lo"])
            errors.append(c["mean"] - t)
        out[f">= {lim:g} e-"] = {"coverage": float(np.mean(inside)), "mean_width": float(np.mean(widths)),
                                 "mean_error": float(np.mean(errors)), "fields": images, "prob": prob,
                                 "draws": num_samples}
    return out
