"""Tile and full catalogs of point sources for crowded-field inference (BLISS / StarNet style).

Conventions:

* Pixel positions are 0-based ``(row, col)`` with pixel **centres at integers** (the numpy / astropy
  convention): an image of shape ``(H, W)`` covers rows ``[-0.5, H - 0.5)`` and cols
  ``[-0.5, W - 0.5)``. Positions are in pixels.
* The image is cut into square tiles of ``tile_size`` (``ts``) pixels. Tile ``(i, j)`` covers rows
  ``[i*ts - 0.5, (i+1)*ts - 0.5)`` and cols ``[j*ts - 0.5, (j+1)*ts - 0.5)`` (half-open: a source
  exactly on a tile edge belongs to the tile that starts there). A location in a tile is a fraction
  ``u`` in ``[0, 1)``: ``row = (i + u_row) * ts - 0.5``, ``col = (j + u_col) * ts - 0.5``.
  (``validate`` accepts ``u = 1`` too, e.g. a saturated sigmoid; it lies on the next tile's edge.)
* Fluxes are in **electrons** (e-) per band; bands are named, e.g. ``("r", "i")``. See
  :mod:`starmodels.tiles.units` for nanomaggies and magnitudes.

:class:`TileCatalog` holds up to ``max_sources`` sources per tile, valid slots first and sorted
brightest first in the first band; :class:`FullCatalog` holds up to ``N`` sources per image, valid
rows first. Invalid slots hold zeros. Both may carry leading batch dimensions, and both are equinox
modules (pytrees) whose constructors do no checks, so they work under ``jax.jit``; call
``validate()`` (eager, numpy) to check the invariants. :func:`tile_to_full`, :func:`crop`, the
``filter`` / ``select_*`` methods, :meth:`TileCatalog.sorted` and :func:`full_to_tile_jax` are
jit-compatible; numpy in gives numpy out. :func:`full_to_tile` is eager and refuses to drop sources
unless told to, and then reports how many it dropped. To take one catalog of a batch:
``jax.tree.map(lambda a: a[k], catalog)``.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import astropy.units as u
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from starmodels.tiles.units import mag_to_flux


class CatalogError(ValueError):
    """A catalog breaks its invariants, or a conversion would lose sources without being told to."""


class Dropped(NamedTuple):
    """Sources dropped by :func:`full_to_tile` / :func:`full_to_tile_jax`, per batch element.

    Attributes:
        outside: valid sources outside the image (int array of the batch shape; 0-d if unbatched).
        overflow: sources beyond ``max_sources`` in their tile (the faintest ones, in the first band).
    """

    outside: np.ndarray | jax.Array
    overflow: np.ndarray | jax.Array


def _bands(bands) -> tuple[str, ...]:
    return (bands,) if isinstance(bands, str) else tuple(str(b) for b in bands)


def _xp(*arrays):
    """``jax.numpy`` if any input is a jax array (or tracer), else ``numpy``."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _argsort_stable(xp, a):
    return np.argsort(a, axis=-1, kind="stable") if xp is np else jnp.argsort(a, axis=-1, stable=True)


def _compact(on, *arrays):
    """Move the slots where ``on`` is true to the front, keeping their order, and zero the others.

    ``on`` is (..., S) bool; each array is (..., S, K). Returns ``(n, arrays...)`` with ``n`` (...,)
    int32 the number of slots on.
    """
    xp = _xp(on, *arrays)
    order = _argsort_stable(xp, xp.logical_not(on).astype(np.int8))
    on_sorted = xp.take_along_axis(on, order, axis=-1)[..., None]
    out = [xp.where(on_sorted, xp.take_along_axis(a, order[..., None], axis=-2), 0) for a in arrays]
    return (on.sum(-1).astype(np.int32), *out)


def _band_index(bands: tuple[str, ...], band: int | str) -> int:
    if isinstance(band, str):
        if band not in bands:
            raise CatalogError(f"no band {band!r}; the catalog has bands {bands}")
        return bands.index(band)
    if not -len(bands) <= band < len(bands):
        raise CatalogError(f"band index {band} out of range for bands {bands}")
    return band


def _check_sources(n, pos, fluxes, bands, pos_name: str):
    """Shared eager checks; returns numpy ``(on, pos, fluxes)``."""
    n, pos, fluxes = np.asarray(n), np.asarray(pos), np.asarray(fluxes)
    if not np.issubdtype(n.dtype, np.integer):
        raise CatalogError(f"n_sources must be an integer array, not {n.dtype}")
    lead = n.shape
    if pos.ndim != n.ndim + 2 or pos.shape[:n.ndim] != lead or pos.shape[-1] != 2:
        raise CatalogError(f"{pos_name} has shape {pos.shape}; with n_sources of shape {lead} it must be "
                           f"{lead} + (max_sources, 2)")
    if fluxes.ndim != pos.ndim or fluxes.shape[:-1] != pos.shape[:-1]:
        raise CatalogError(f"fluxes has shape {fluxes.shape}; it must be {pos.shape[:-1]} + (n_bands,)")
    if len(bands) == 0 or fluxes.shape[-1] != len(bands):
        raise CatalogError(f"fluxes has {fluxes.shape[-1]} bands but the catalog names {len(bands)}: {bands}")
    m = pos.shape[-2]
    bad = (n < 0) | (n > m)
    if bad.any():
        raise CatalogError(f"n_sources must be in [0, {m}]; {bad.sum()} entries are not "
                           f"(min {n.min()}, max {n.max()})")
    for name, x in ((pos_name, pos), ("fluxes", fluxes)):
        if not np.isfinite(x).all():
            raise CatalogError(f"{name} has {(~np.isfinite(x)).sum()} non-finite values")
    on = np.arange(m) < n[..., None]
    neg = on & (fluxes < 0).any(-1)
    if neg.any():
        raise CatalogError(f"{neg.sum()} valid sources have a negative flux")
    for name, x in ((pos_name, pos), ("fluxes", fluxes)):
        junk = ~on & (x != 0).any(-1)
        if junk.any():
            raise CatalogError(f"{junk.sum()} invalid slots (index >= n_sources) hold non-zero {name}; "
                               "they must be zero")
    return on, pos, fluxes


class _Sources(eqx.Module):
    """Flux selections shared by both catalogs (``self.filter`` does the work)."""

    def select_flux(self, min_flux=None, max_flux=None, band: int | str = 0):
        """Keep sources with ``min_flux <= flux < max_flux`` (e-) in ``band`` (index or name)."""
        f = self.fluxes[..., _band_index(self.bands, band)]
        keep = self.is_on
        if min_flux is not None:
            keep = keep & (f >= min_flux)
        if max_flux is not None:
            keep = keep & (f < max_flux)
        return self.filter(keep)

    def select_mag(self, nelec_per_nmgy, min_mag=None, max_mag=None, band: int | str = 0):
        """Keep sources with ``min_mag <= mag < max_mag`` in ``band``.

        Args:
            nelec_per_nmgy: calibration of ``band``, e- per nanomaggy.
            min_mag, max_mag: magnitude bounds (mag, ``22.5 - 2.5 log10(nMgy)``); None for no bound.
                Sources of zero flux have infinite magnitude: kept only if ``max_mag`` is None.
        """
        f = self.fluxes[..., _band_index(self.bands, band)]
        keep = self.is_on
        if min_mag is not None:
            keep = keep & (f <= mag_to_flux(min_mag, nelec_per_nmgy))
        if max_mag is not None:
            keep = keep & (f > mag_to_flux(max_mag, nelec_per_nmgy))
        return self.filter(keep)


class TileCatalog(_Sources):
    """Up to ``max_sources`` point sources in each tile of an image.

    Attributes:
        n_sources: (..., nth, ntw) int, number of valid slots per tile.
        locs: (..., nth, ntw, M, 2) float, (row, col) location in the tile, fraction in [0, 1).
        fluxes: (..., nth, ntw, M, B) float, e- per band.
        tile_size: tile side, pixels (static).
        bands: band names, one per flux column (static).

    Slots ``m < n_sources`` are valid, sorted brightest first in the first band; the others are zero.
    """

    n_sources: np.ndarray | jax.Array
    locs: np.ndarray | jax.Array
    fluxes: np.ndarray | jax.Array
    tile_size: int = eqx.field(static=True, converter=operator.index)
    bands: tuple[str, ...] = eqx.field(static=True, converter=_bands)

    @property
    def max_sources(self) -> int:
        """Slots per tile, M."""
        return self.locs.shape[-2]

    @property
    def n_tiles_h(self) -> int:
        """Tiles along rows."""
        return self.n_sources.shape[-2]

    @property
    def n_tiles_w(self) -> int:
        """Tiles along cols."""
        return self.n_sources.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch dimensions."""
        return tuple(self.n_sources.shape[:-2])

    @property
    def height(self) -> int:
        """Image height, pixels."""
        return self.n_tiles_h * self.tile_size

    @property
    def width(self) -> int:
        """Image width, pixels."""
        return self.n_tiles_w * self.tile_size

    @property
    def is_on(self):
        """(..., nth, ntw, M) bool, true for valid slots."""
        xp = _xp(self.n_sources)
        return xp.arange(self.max_sources) < self.n_sources[..., None]

    def validate(self) -> TileCatalog:
        """Check the invariants eagerly (numpy); raise :class:`CatalogError` or return ``self``."""
        if self.tile_size <= 0:
            raise CatalogError(f"tile_size must be a positive number of pixels, not {self.tile_size}")
        if np.ndim(self.n_sources) < 2:
            raise CatalogError(f"n_sources has shape {np.shape(self.n_sources)}; it must be (..., nth, ntw)")
        on, locs, fluxes = _check_sources(self.n_sources, self.locs, self.fluxes, self.bands, "locs")
        out = on[..., None] & ((locs < 0) | (locs > 1))
        if out.any():
            raise CatalogError(f"{out.any(-1).sum()} valid sources have locs outside [0, 1] (fractions of "
                               f"a tile); min {locs[on].min()}, max {locs[on].max()}")
        f0 = fluxes[..., 0]
        unsorted = on[..., 1:] & (f0[..., 1:] > f0[..., :-1])
        if unsorted.any():
            raise CatalogError(f"{unsorted.any(-1).sum()} tiles are not sorted brightest first in band "
                               f"{self.bands[0]!r}; use .sorted()")
        return self

    def sorted(self) -> TileCatalog:
        """The same catalog with each tile's valid slots sorted brightest first in the first band."""
        xp = _xp(self.n_sources, self.locs, self.fluxes)
        key = xp.where(self.is_on, -self.fluxes[..., 0], xp.inf)
        order = _argsort_stable(xp, key)[..., None]
        return TileCatalog(self.n_sources, xp.take_along_axis(self.locs, order, axis=-2),
                           xp.take_along_axis(self.fluxes, order, axis=-2), self.tile_size, self.bands)

    def filter(self, mask) -> TileCatalog:
        """Keep the valid sources where ``mask`` ((..., nth, ntw, M) bool) is true; order is kept."""
        n, locs, fluxes = _compact(self.is_on & mask, self.locs, self.fluxes)
        return TileCatalog(n, locs, fluxes, self.tile_size, self.bands)

    def crop_tiles(self, top: int, bottom: int | None = None, left: int | None = None,
                   right: int | None = None) -> TileCatalog:
        """Drop whole tiles at the borders: ``top`` rows of tiles, ``bottom`` rows (default ``top``),
        ``left`` cols (default ``top``) and ``right`` cols (default ``left``).

        Locations are relative to their tile, so they are unchanged; the image shrinks by
        ``(top + bottom) * tile_size`` pixels in height and likewise in width.
        """
        top = operator.index(top)
        bottom, left = (top if x is None else operator.index(x) for x in (bottom, left))
        right = left if right is None else operator.index(right)
        if min(top, bottom, left, right) < 0 or top + bottom >= self.n_tiles_h or \
                left + right >= self.n_tiles_w:
            raise CatalogError(f"cannot drop {top}+{bottom} of {self.n_tiles_h} tile rows and {left}+{right} "
                               f"of {self.n_tiles_w} tile cols (borders must be >= 0 and leave a tile)")
        rows, cols = slice(top, self.n_tiles_h - bottom), slice(left, self.n_tiles_w - right)
        return TileCatalog(self.n_sources[..., rows, cols], self.locs[..., rows, cols, :, :],
                           self.fluxes[..., rows, cols, :, :], self.tile_size, self.bands)


class FullCatalog(_Sources):
    """Up to ``N`` point sources in an image of ``height x width`` pixels.

    Attributes:
        n_sources: (...,) int, number of valid rows.
        plocs: (..., N, 2) float, (row, col) pixel position (0-based, centres at integers).
        fluxes: (..., N, B) float, e- per band.
        height, width: image size, pixels (static).
        bands: band names (static).

    Rows ``k < n_sources`` are valid, in no particular order; the others are zero. Valid sources may
    lie outside the image (see :func:`crop` and :func:`full_to_tile`).
    """

    n_sources: np.ndarray | jax.Array
    plocs: np.ndarray | jax.Array
    fluxes: np.ndarray | jax.Array
    height: int = eqx.field(static=True, converter=operator.index)
    width: int = eqx.field(static=True, converter=operator.index)
    bands: tuple[str, ...] = eqx.field(static=True, converter=_bands)

    @property
    def max_sources(self) -> int:
        """Rows per catalog, N."""
        return self.plocs.shape[-2]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading batch dimensions."""
        return tuple(np.shape(self.n_sources))

    @property
    def is_on(self):
        """(..., N) bool, true for valid rows."""
        xp = _xp(self.n_sources)
        return xp.arange(self.max_sources) < self.n_sources[..., None]

    def validate(self) -> FullCatalog:
        """Check the invariants eagerly (numpy); raise :class:`CatalogError` or return ``self``."""
        if self.height <= 0 or self.width <= 0:
            raise CatalogError(f"image size must be positive, not {self.height} x {self.width} pixels")
        _check_sources(self.n_sources, self.plocs, self.fluxes, self.bands, "plocs")
        return self

    def filter(self, mask) -> FullCatalog:
        """Keep the valid sources where ``mask`` ((..., N) bool) is true; order is kept."""
        n, plocs, fluxes = _compact(self.is_on & mask, self.plocs, self.fluxes)
        return FullCatalog(n, plocs, fluxes, self.height, self.width, self.bands)

    def _single(self, what: str):
        if self.batch_shape:
            raise CatalogError(f"{what} needs one catalog, not a batch of shape {self.batch_shape}; take "
                               "one with jax.tree.map(lambda a: a[k], catalog)")
        n = int(self.n_sources)
        return np.asarray(self.plocs)[:n], np.asarray(self.fluxes)[:n]

    def to_table(self) -> Table:
        """Valid sources as an astropy Table: ``row``, ``col`` (pix), ``flux_<band>`` (electron).

        ``meta`` holds ``height``, ``width`` (pixels) and ``bands``. Unbatched catalogs only.
        """
        plocs, fluxes = self._single("to_table")
        t = Table(meta={"height": self.height, "width": self.width, "bands": list(self.bands)})
        t["row"] = u.Quantity(plocs[:, 0], u.pix)
        t["col"] = u.Quantity(plocs[:, 1], u.pix)
        for b, band in enumerate(self.bands):
            t[f"flux_{band}"] = u.Quantity(fluxes[:, b], u.electron)
        return t

    @classmethod
    def from_table(cls, table: Table, height: int | None = None, width: int | None = None,
                   bands=None, max_sources: int | None = None) -> FullCatalog:
        """Catalog from a Table with ``row``, ``col`` (pix) and ``flux_<band>`` (e-) columns.

        ``height``, ``width`` and ``bands`` default to ``table.meta`` (as written by
        :meth:`to_table`); bands otherwise to every ``flux_*`` column in order. ``max_sources``
        (default: the table length) pads the catalog with empty rows. Validated.
        """
        height = table.meta.get("height") if height is None else height
        width = table.meta.get("width") if width is None else width
        if height is None or width is None:
            raise CatalogError("image size unknown: pass height and width (pixels) or set table.meta")
        if bands is None:
            bands = table.meta.get("bands") or [c[5:] for c in table.colnames if c.startswith("flux_")]
        bands = _bands(bands)
        if not bands:
            raise CatalogError(f"no bands: pass bands or add flux_<band> columns; table has {table.colnames}")
        missing = [c for c in ("row", "col", *(f"flux_{b}" for b in bands)) if c not in table.colnames]
        if missing:
            raise CatalogError(f"table lacks columns {missing}; it has {table.colnames}")

        def values(name, unit):
            col = table[name]
            if getattr(col, "unit", None) is None:
                return np.asarray(col, float)
            try:
                return u.Quantity(col).to_value(unit)
            except u.UnitConversionError as err:
                raise CatalogError(f"column {name!r} is in {col.unit}, not convertible to {unit}") from err

        plocs = np.stack([values("row", u.pix), values("col", u.pix)], -1)
        fluxes = np.stack([values(f"flux_{b}", u.electron) for b in bands], -1)
        return _padded(plocs, fluxes, height, width, bands, max_sources)

    def sky(self, wcs, origin=(0, 0)) -> SkyCoord:
        """Sky positions of the valid sources.

        Args:
            wcs: astropy WCS of a frame (0-based pixels, centres at integers).
            origin: (row, col) of this catalog's pixel (0, 0) in that frame, pixels: frame pixel =
                catalog pixel + origin (e.g. ``obs.meta["origin"]`` of a cutout).
        """
        plocs, _ = self._single("sky")
        return wcs.pixel_to_world(plocs[:, 1] + origin[1], plocs[:, 0] + origin[0])

    @classmethod
    def from_sky(cls, coords: SkyCoord, fluxes, wcs, height: int, width: int, bands, origin=(0, 0),
                 max_sources: int | None = None) -> FullCatalog:
        """Catalog from sky positions, the inverse of :meth:`sky`.

        Args:
            coords: (n,) SkyCoord.
            fluxes: (n, B) e-.
            wcs, origin: as in :meth:`sky`.
            height, width: image size, pixels; sources outside are kept (see :func:`crop`).
            bands: band names.
            max_sources: rows of the catalog (default n); the rest is padding. Validated.
        """
        bands = _bands(bands)
        x, y = wcs.world_to_pixel(coords)
        plocs = np.stack([np.asarray(y, float) - origin[0], np.asarray(x, float) - origin[1]], -1)
        plocs = plocs.reshape(-1, 2)
        fluxes = np.asarray(fluxes, float).reshape(len(plocs), len(bands))
        return _padded(plocs, fluxes, height, width, bands, max_sources)


def _padded(plocs, fluxes, height, width, bands, max_sources) -> FullCatalog:
    n = len(plocs)
    size = n if max_sources is None else max_sources
    if size < n:
        raise CatalogError(f"{n} sources do not fit max_sources={size}")
    pad = ((0, size - n), (0, 0))
    fc = FullCatalog(np.asarray(n, np.int32), np.pad(plocs, pad), np.pad(fluxes, pad), height, width, bands)
    return fc.validate()


def tile_to_full(tc: TileCatalog) -> FullCatalog:
    """Full catalog of a tile catalog: exact (positions to float rounding), jit-compatible.

    Sources come in tile raster order (row of tiles, then col), brightest first within a tile;
    ``N = nth * ntw * M``. Positions: ``row = (i + u_row) * ts - 0.5`` pixels (cols likewise).
    """
    xp = _xp(tc.n_sources, tc.locs, tc.fluxes)
    nth, ntw, m, ts = tc.n_tiles_h, tc.n_tiles_w, tc.max_sources, tc.tile_size
    dtype = xp.result_type(tc.locs.dtype, np.float32)
    ij = xp.meshgrid(xp.arange(nth, dtype=dtype), xp.arange(ntw, dtype=dtype), indexing="ij")
    plocs = (xp.stack(ij, -1)[:, :, None, :] + tc.locs) * ts - 0.5
    flat = tc.batch_shape + (nth * ntw * m,)
    n, plocs, fluxes = _compact(tc.is_on.reshape(flat), plocs.reshape(flat + (2,)),
                                tc.fluxes.reshape(flat + (len(tc.bands),)))
    return FullCatalog(n, plocs, fluxes, tc.height, tc.width, tc.bands)


def _inside(plocs, height: int, width: int):
    """(..., N) bool: position in ``[-0.5, H - 0.5) x [-0.5, W - 0.5)`` (the one test used everywhere)."""
    x = plocs + 0.5
    return (x[..., 0] >= 0) & (x[..., 0] < height) & (x[..., 1] >= 0) & (x[..., 1] < width)


def crop(fc: FullCatalog, row0, col0, height: int, width: int) -> FullCatalog:
    """The sources inside the box of ``height x width`` pixels whose pixel (0, 0) is ``(row0, col0)``.

    Positions become relative to the box (``row - row0``, pixels); sources outside it are removed
    (the catalog keeps ``N`` rows). Jit-compatible; ``row0``, ``col0`` may be traced.
    """
    xp = _xp(fc.n_sources, fc.plocs, fc.fluxes, row0, col0)
    plocs = fc.plocs - xp.asarray([row0, col0], dtype=fc.plocs.dtype)
    keep = fc.is_on & _inside(plocs, height, width)
    n, plocs, fluxes = _compact(keep, plocs, fc.fluxes)
    return FullCatalog(n, plocs, fluxes, height, width, fc.bands)


def _to_tiles(fc: FullCatalog, tile_size: int, max_sources: int):
    """Bin sources into tiles (numpy or jax). Returns ``(catalog, counts, n_outside)``.

    ``counts`` (..., nth, ntw) is the number of sources each tile received before truncation to
    the ``max_sources`` brightest (first band).
    """
    ts, m = operator.index(tile_size), operator.index(max_sources)
    if ts <= 0 or m < 0:
        raise CatalogError(f"tile_size must be positive and max_sources >= 0, not {ts} and {m}")
    if fc.height % ts or fc.width % ts:
        h, w = fc.height // ts * ts, fc.width // ts * ts
        raise CatalogError(f"image of {fc.height} x {fc.width} pixels is not a multiple of tile_size={ts}; "
                           f"crop it first, e.g. crop(fc, 0, 0, {h}, {w})")
    xp = _xp(fc.n_sources, fc.plocs, fc.fluxes)
    nth, ntw, nb = fc.height // ts, fc.width // ts, int(np.prod(fc.batch_shape))
    n_bands, n_tiles = len(fc.bands), nth * ntw
    plocs = fc.plocs.reshape(nb, fc.max_sources, 2)
    fluxes = fc.fluxes.reshape(nb, fc.max_sources, n_bands)
    on = fc.is_on.reshape(nb, fc.max_sources)
    inside = on & _inside(plocs, fc.height, fc.width)
    x = (plocs + 0.5) / ts
    ij = xp.clip(xp.floor(x), 0, xp.asarray([nth - 1, ntw - 1])).astype(np.int32)
    locs = x - ij
    batch = xp.arange(nb, dtype=np.int32)[:, None]
    sentinel = nb * n_tiles
    t = xp.where(inside, batch * n_tiles + ij[..., 0] * ntw + ij[..., 1], sentinel).ravel()
    order = xp.lexsort((-fluxes[..., 0].ravel(), t))
    t_sorted = t[order]
    rank = xp.arange(t.size) - xp.searchsorted(t_sorted, t_sorted, side="left")
    counts = (xp.bincount(t, minlength=sentinel + 1) if xp is np else
              jnp.bincount(t, length=sentinel + 1))[:sentinel]
    keep = (t_sorted < sentinel) & (rank < m)
    src_locs, src_fluxes = locs.reshape(-1, 2)[order], fluxes.reshape(-1, n_bands)[order]
    out_locs = xp.zeros((sentinel, m, 2), locs.dtype)
    out_fluxes = xp.zeros((sentinel, m, n_bands), fluxes.dtype)
    if xp is np:
        out_locs[t_sorted[keep], rank[keep]] = src_locs[keep]
        out_fluxes[t_sorted[keep], rank[keep]] = src_fluxes[keep]
    else:
        dest = xp.where(keep, t_sorted, sentinel)
        out_locs = out_locs.at[dest, rank].set(src_locs, mode="drop")
        out_fluxes = out_fluxes.at[dest, rank].set(src_fluxes, mode="drop")
    shape = fc.batch_shape + (nth, ntw)
    counts = counts.reshape(shape)
    tc = TileCatalog(xp.minimum(counts, m).astype(np.int32), out_locs.reshape(shape + (m, 2)),
                     out_fluxes.reshape(shape + (m, n_bands)), ts, fc.bands)
    return tc, counts, (on & ~inside).sum(-1).reshape(fc.batch_shape)


_OVERFLOW = ("raise", "keep_brightest")
_OUTSIDE = ("raise", "drop")


def full_to_tile(fc: FullCatalog, tile_size: int, max_sources: int, *, overflow: str = "raise",
                 outside: str = "raise") -> TileCatalog | tuple[TileCatalog, Dropped]:
    """Tile catalog of a full catalog (eager, numpy): the inverse of :func:`tile_to_full`.

    Each source goes to the tile whose half-open pixel range holds it (see the module docstring);
    ``u = (row + 0.5) / ts - i``. Within a tile, sources are sorted brightest first in the first band
    (ties keep the input order). The input and the result are validated.

    Args:
        fc: the full catalog; ``height`` and ``width`` must be multiples of ``tile_size``.
        tile_size: tile side, pixels.
        max_sources: slots per tile, M.
        overflow: a tile receiving more than ``max_sources`` sources: ``"raise"`` (default) a
            :class:`CatalogError` naming how many tiles overflow; ``"keep_brightest"`` keeps the
            brightest in the first band.
        outside: valid sources outside the image: ``"raise"`` (default) or ``"drop"``.

    Returns:
        The :class:`TileCatalog` if both policies are ``"raise"`` (nothing can be dropped); otherwise
        ``(catalog, dropped)`` with ``dropped`` a :class:`Dropped` of counts per batch element.
    """
    if overflow not in _OVERFLOW or outside not in _OUTSIDE:
        raise CatalogError(f"overflow must be one of {_OVERFLOW} and outside one of {_OUTSIDE}, "
                           f"not {overflow!r} and {outside!r}")
    if any(isinstance(a, jax.core.Tracer) for a in (fc.n_sources, fc.plocs, fc.fluxes)):
        raise CatalogError("full_to_tile is eager (numpy); under jax.jit use full_to_tile_jax")
    fc = jax.tree.map(np.asarray, fc).validate()
    tc, counts, n_out = _to_tiles(fc, tile_size, max_sources)
    if outside == "raise" and n_out.sum():
        raise CatalogError(f"{n_out.sum()} valid sources lie outside the {fc.height} x {fc.width} image "
                           f"(rows [-0.5, {fc.height - 0.5}), cols [-0.5, {fc.width - 0.5})); crop the "
                           "catalog first or pass outside='drop'")
    excess = np.maximum(counts - tc.max_sources, 0)
    if overflow == "raise" and excess.any():
        raise CatalogError(f"{(excess > 0).sum()} of {counts.size} tiles receive more than "
                           f"max_sources={tc.max_sources} sources (up to {counts.max()} in one tile, "
                           f"{excess.sum()} in excess); raise max_sources or pass overflow='keep_brightest'")
    tc.validate()
    if overflow == "raise" and outside == "raise":
        return tc
    return tc, Dropped(outside=np.asarray(n_out), overflow=np.asarray(excess.sum((-2, -1))))


def full_to_tile_jax(fc: FullCatalog, tile_size: int, max_sources: int) -> tuple[TileCatalog, Dropped]:
    """Jit-compatible :func:`full_to_tile` that keeps the brightest and drops sources outside.

    Nothing is checked or raised (use it on validated catalogs); the :class:`Dropped` counts (jax int
    arrays of the batch shape) say what was lost: check them. Returns ``(catalog, dropped)``.
    """
    fc = jax.tree.map(jnp.asarray, fc)
    tc, counts, n_out = _to_tiles(fc, tile_size, max_sources)
    return tc, Dropped(outside=n_out, overflow=jnp.maximum(counts - tc.max_sources, 0).sum((-2, -1)))
