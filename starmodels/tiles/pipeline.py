"""From an image to a catalog with the trained encoder: background estimate, encoder, mode catalog.

:func:`catalog_image` is what the benchmark, the Python interface and the CLI run on a (B, H, W)
image in electrons; it returns the encoder's parameters per tile, the point catalog per tile at the
decision threshold (the checkerboard's second colour conditioned on the first colour's catalog at the
same threshold) and its per-star table (:func:`~starmodels.tiles.results.mode_table`); the image and
background are kept for drawing catalogs (:func:`~starmodels.tiles.encoder.sample_checkerboard`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from starmodels.tiles.encoder import TileEncoder, encode_checkerboard, mode_catalog
from starmodels.tiles.prior import TilePrior
from starmodels.tiles.results import mode_table
from starmodels.tiles.simulate import SimulatorConfig, estimate_background


class ImageError(ValueError):
    """An image the encoder cannot catalog (shape, bands, non-finite pixels); the message says why."""


@dataclass
class ImageCatalog:
    """The encoder's answer for one image: per-tile ``params``, ``background`` (B, H, W) electrons,
    the point catalog per tile (``n_sources``, ``locs``, ``fluxes``, ``count_probs``), its per-star
    ``table`` (dict of arrays), ``seconds`` spent (background + encoder + point catalog) and the
    ``image`` (B, H, W) electrons it was made from."""

    params: dict
    background: np.ndarray
    n_sources: np.ndarray
    locs: np.ndarray
    fluxes: np.ndarray
    count_probs: np.ndarray
    table: dict
    seconds: float
    image: np.ndarray


def check_image(image, encoder: TileEncoder) -> np.ndarray:
    """The image as float32 (B, H, W), or :class:`ImageError` naming what is wrong."""
    a = np.asarray(image)
    if a.ndim == 2 and encoder.n_bands == 1:
        a = a[None]
    if a.ndim != 3:
        raise ImageError(f"image must be (bands, H, W), got shape {a.shape}")
    if a.shape[0] != encoder.n_bands:
        raise ImageError(f"the encoder needs {encoder.n_bands} band(s), the image has {a.shape[0]}")
    ts = encoder.tile_size
    if a.shape[1] < ts or a.shape[2] < ts:
        raise ImageError(f"image {a.shape[1]}x{a.shape[2]} is smaller than one {ts}x{ts} tile")
    if a.shape[1] % ts or a.shape[2] % ts:
        raise ImageError(f"image sides {a.shape[1]}x{a.shape[2]} must be multiples of the tile size {ts}; "
                         "crop or pad it")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ImageError(f"image has {int(bad.sum())} non-finite pixel(s) (first at band, row, col "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}); mask or fill them first")
    return a.astype(np.float32)


def catalog_image(encoder: TileEncoder, image, prior: TilePrior, cfg: SimulatorConfig,
                  threshold: float | None = None) -> ImageCatalog:
    """Catalog one (B, H, W) image in electrons (sky included) with a trained encoder; ``threshold``
    is the existence probability a star needs (default: the most probable count per tile), used for
    the first colour's catalog that the second colour is conditioned on and for the final catalog."""
    a = check_image(image, encoder)
    t0 = time.perf_counter()
    bg = estimate_background(jnp.asarray(a), cfg.background_box, cfg.background_quantile)
    params = encode_checkerboard(encoder, jnp.asarray(a), bg, prior.log_flux_bounds(), threshold)
    n, locs, fluxes, probs = mode_catalog(params, encoder.max_sources, threshold)
    jax.block_until_ready(fluxes)
    seconds = time.perf_counter() - t0
    table = mode_table(params, prior.tile_size, prior.bands, threshold)
    return ImageCatalog(params, np.asarray(bg), np.asarray(n), np.asarray(locs), np.asarray(fluxes),
                        np.asarray(probs), table, seconds, a)
