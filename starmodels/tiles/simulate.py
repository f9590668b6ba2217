"""Batches of simulated crowded-field images, fresh every call (jit + vmap, no disk cache).

A simulated image is drawn on a tile grid larger than the image by ``border_tiles`` on each side, so
that stars just outside the image shine into it as in real data; the returned tile catalog covers the
image only. The light, in electrons per pixel:

* the stars of the prior (the catalog to infer);
* unresolved stars below the catalog's flux limit (:func:`faint_light`): the same Pareto luminosity
  function continued from ``faint_flux_min`` up to the prior's ``flux_min``, placed at the centres of
  the fine cells, with a mean light per pixel drawn uniformly in ``[faint_light_lo, faint_light_hi]``
  (reference band) per image. In a globular cluster they make a lumpy background well above the sky;
* the sky: a plane per band, level drawn uniformly in ``[background_lo, background_hi]`` with a
  random gradient of up to ``max_gradient`` (fraction of the level across the image);

then Gaussian noise with the Poisson variance plus the read (dark) variance. The encoder is told the
background only through :func:`estimate_background`, computed the same way on simulated and real
images, so whatever that estimator's bias in a crowded field, training and use agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from starmodels.tiles.prior import TilePrior
from starmodels.tiles.render import render_tiles

FAINT_SLOTS = 4   # unresolved stars per fine cell at most (Poisson counts above are capped)


@dataclass(frozen=True)
class SimulatorConfig:
    """What the simulator knows about the instrument and the field (electrons, pixels)."""

    psf: np.ndarray                        # (B, S, S) fine kernels, ``oversample`` cells per pixel
    oversample: int
    band_offsets: np.ndarray               # (B, 2) pixels
    background_lo: np.ndarray              # (B,) sky, electrons per pixel
    background_hi: np.ndarray              # (B,)
    read_variance: np.ndarray              # (B,) electrons² per pixel
    max_gradient: float = 0.1
    border_tiles: int = 6
    faint_flux_min: float = 50.0           # electrons (reference band)
    faint_light_lo: float = 0.0            # electrons per pixel (reference band)
    faint_light_hi: float = 0.0
    background_box: int = 16               # pixels, see estimate_background
    background_quantile: float = 0.25


def estimate_background(image: jnp.ndarray, box: int = 16, quantile: float = 0.25) -> jnp.ndarray:
    """A smooth background map: the ``quantile`` of each ``box`` x ``box`` block, interpolated linearly.

    The image is padded by reflection to a multiple of ``box``; works on (..., B, H, W) electrons and
    returns the same shape. Used identically on simulated and real images.
    """
    h, w = image.shape[-2:]
    ph, pw = -h % box, -w % box
    pad = [(0, 0)] * (image.ndim - 2) + [(0, ph), (0, pw)]
    x = jnp.pad(image, pad, mode="reflect")
    nby, nbx = x.shape[-2] // box, x.shape[-1] // box
    blocks = x.reshape(*x.shape[:-2], nby, box, nbx, box)
    blocks = jnp.moveaxis(blocks, -3, -2).reshape(*x.shape[:-2], nby, nbx, box * box)
    level = jnp.quantile(blocks, quantile, axis=-1)
    full = jax.image.resize(level, (*level.shape[:-2], nby * box, nbx * box), method="linear")
    return full[..., :h, :w]


def faint_light(key, prior: TilePrior, cfg: SimulatorConfig, batch: int, shape: tuple[int, int]):
    """Unresolved stars per fine cell, (batch, B, Hf, Wf) electrons, for fine grids of ``shape``.

    Per image the mean light per pixel ``L`` (reference band) is uniform in ``[faint_light_lo,
    faint_light_hi]``; each fine cell holds ``Poisson(L / E[f] / oversample²)`` stars (at most
    :data:`FAINT_SLOTS`) with truncated-Pareto fluxes on ``[faint_flux_min, prior.flux_min]`` (exponent
    ``prior.alpha``) and the prior's mean colours.
    """
    a, lo, hi = prior.alpha, cfg.faint_flux_min, prior.flux_min
    if abs(a - 1.0) < 1e-6:
        mean_f = lo * np.log(hi / lo) / (1 - lo / hi)
    else:
        mean_f = a / (a - 1) * lo * (1 - (hi / lo) ** (1 - a)) / (1 - (hi / lo) ** (-a))
    kl, kn, kf = jax.random.split(key, 3)
    light = jax.random.uniform(kl, (batch, 1, 1), minval=cfg.faint_light_lo, maxval=cfg.faint_light_hi)
    lam = light / mean_f / cfg.oversample**2                                           # (batch, 1, 1)
    # Poisson counts by inverse CDF against the per-image cumulative probabilities of 0..SLOTS-1
    # (much cheaper than jax.random.poisson per cell); counts above FAINT_SLOTS are capped
    k = jnp.arange(FAINT_SLOTS)
    lam_k = lam[..., None]
    logpmf = k * jnp.log(jnp.clip(lam_k, 1e-30, None)) - lam_k - jax.scipy.special.gammaln(k + 1.0)
    cdf = jnp.cumsum(jnp.exp(logpmf), axis=-1)                                        # (batch, 1, 1, SLOTS)
    n = (jax.random.uniform(kn, (batch, *shape))[..., None] > cdf).sum(-1)
    u = jax.random.uniform(kf, (batch, *shape, FAINT_SLOTS))
    ratio = (hi / lo) ** (-a)
    f = lo * (1.0 - u * (1.0 - ratio)) ** (-1.0 / a)
    total = jnp.where(jnp.arange(FAINT_SLOTS) < n[..., None], f, 0.0).sum(-1)          # (batch, Hf, Wf)
    colours = jnp.concatenate([jnp.zeros(1), jnp.asarray(prior.colour_mean, total.dtype)])
    return total[:, None] * jnp.exp(colours)[None, :, None, None]


def simulate_batch(key, prior: TilePrior, cfg: SimulatorConfig, batch: int, n_tiles: tuple[int, int]):
    """Simulate ``batch`` images of ``n_tiles`` tiles (jit this with static prior/cfg/batch/n_tiles).

    Returns:
        dict with ``image``, ``background`` (the true smooth part: sky plane plus the mean faint
        light) and ``background_estimate`` (:func:`estimate_background` of the image), each
        (batch, B, H, W) electrons, and the image's tile catalog ``n_sources`` (batch, nth, ntw),
        ``locs`` (batch, nth, ntw, M, 2), ``fluxes`` (batch, nth, ntw, M, B) electrons.
    """
    bt = cfg.border_tiles
    nth, ntw = n_tiles
    big = (nth + 2 * bt, ntw + 2 * bt)
    kc, kb, kg, kn, kf = jax.random.split(key, 5)
    n, locs, fluxes = prior.sample(kc, (batch,), big)
    on = jnp.arange(prior.max_sources) < n[..., None]
    fine_shape = (big[0] * prior.tile_size * cfg.oversample, big[1] * prior.tile_size * cfg.oversample)
    faint = None
    if cfg.faint_light_hi > 0:
        faint = faint_light(kf, prior, cfg, batch, fine_shape)
    offsets = jnp.asarray(cfg.band_offsets)
    stars = render_tiles(locs, fluxes, on, jnp.asarray(cfg.psf), prior.tile_size, offsets, border_tiles=bt,
                         oversample=cfg.oversample, faint=faint)
    h, w = stars.shape[-2:]
    lo, hi = jnp.asarray(cfg.background_lo), jnp.asarray(cfg.background_hi)
    level = lo + (hi - lo) * jax.random.uniform(kb, (batch, 1))                   # (batch, B)
    grad = cfg.max_gradient * jax.random.uniform(kg, (batch, 2), minval=-1.0, maxval=1.0)
    yy = (jnp.arange(h) - (h - 1) / 2) / h
    xx = (jnp.arange(w) - (w - 1) / 2) / w
    plane = 1.0 + grad[:, 0, None, None] * yy[:, None] + grad[:, 1, None, None] * xx[None, :]
    sky = level[:, :, None, None] * plane[:, None]
    rate = sky + stars
    sd = jnp.sqrt(rate + jnp.asarray(cfg.read_variance)[:, None, None])
    image = rate + sd * jax.random.normal(kn, rate.shape)
    faint_mean = 0.0 if faint is None else faint.mean(axis=(-2, -1), keepdims=True) * cfg.oversample**2
    inner = (slice(None), slice(bt, bt + nth), slice(bt, bt + ntw))
    return {"image": image, "background": sky + faint_mean,
            "background_estimate": estimate_background(image, cfg.background_box, cfg.background_quantile),
            "n_sources": n[inner], "locs": locs[inner], "fluxes": fluxes[inner]}
