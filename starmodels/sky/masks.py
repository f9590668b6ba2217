"""Pixel masks for channel images, built on the host (numpy/astropy).

A mask is a boolean array of the image's shape with **True = use the pixel** (the convention of
:class:`starmodels.noise.NoiseModel` and :class:`starmodels.io.Observation`); masked pixels carry no
weight in a likelihood and may hold any value, NaN included. Build masks from data-quality flags
(:func:`mask_from_dq`), from non-finite values (:func:`mask_from_nans`) and from user regions
(:func:`region_mask`), AND them together with :func:`combine`, and split the used pixels into fitted and
held-out pixels for validation with :func:`holdout_split`.

Conventions: arrays are indexed ``[row, col]``; pixel coordinates are 0-based with the centre of pixel
``[i, j]`` at ``(row, col) = (i, j)``; a WCS maps ``(x, y) = (col, row)`` (astropy's order) to RA/Dec in
degrees. Pixel-region sizes are in pixels, sky-region sizes in arcsec. A pixel belongs to a region when
its centre does (boundary included). Every error is a ValueError naming the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from starmodels.sky.checks import is_int, is_number, shape2
from starmodels.sky.reproject import celestial_wcs

__all__ = ["HoldoutSplit", "PixelBox", "PixelCircle", "SkyBox", "SkyCircle", "combine", "holdout_split",
           "mask_from_dq", "mask_from_nans", "region_mask"]

_EMPTY = "the mask hides every pixel"


# -- data quality and non-finite values ----------------------------------------------------------------

def mask_from_dq(dq, bad_bits) -> np.ndarray:
    """True where no bad data-quality bit is set: ``(dq & bad_bits) == 0``.

    Args:
        dq: integer data-quality array (any shape), e.g. a FITS ``DQ`` extension; each bit is a flag.
            A floating-point or boolean array is rejected: convert it explicitly once you know it holds
            whole-number flags.
        bad_bits: the flags that make a pixel unusable, either an int bitmask (e.g. ``0b101`` or
            ``1 | 4``) or a list of bit numbers (0 = least significant bit, up to 63), e.g. ``[0, 2]``.
            An empty list or a bitmask of 0 keeps every pixel.

    Returns:
        Boolean array of ``dq``'s shape, True = use.
    """
    q = np.asarray(dq)
    if q.dtype.kind not in "iu":
        raise ValueError(f"DQ must be an integer array of bit flags, got dtype {q.dtype}"
                         + ("" if q.dtype.kind != "f" else
                            "; if it holds whole numbers, convert it with dq.astype(np.int64)"))
    if q.ndim == 0:
        raise ValueError("DQ must be an array of bit flags, got a single number")
    if is_int(bad_bits):
        bits = int(bad_bits)
        if not 0 <= bits < 1 << 64:
            raise ValueError(f"bad_bits bitmask must be between 0 and 2**64 - 1, got {bits}")
    elif isinstance(bad_bits, list | tuple | set | frozenset | np.ndarray):
        numbers = list(np.ravel(bad_bits)) if isinstance(bad_bits, np.ndarray) else list(bad_bits)
        wrong = [b for b in numbers if not is_int(b) or not 0 <= int(b) <= 63]
        if wrong:
            raise ValueError(f"bad_bits bit numbers must be integers from 0 to 63, got {wrong}")
        bits = 0
        for b in numbers:
            bits |= 1 << int(b)
    else:
        raise ValueError(f"bad_bits must be an int bitmask or a list of bit numbers, got {bad_bits!r}")
    # two's complement for signed flags, so every bit of the stored integer can be tested
    q64 = q.astype(np.int64).view(np.uint64) if q.dtype.kind == "i" else q.astype(np.uint64)
    return (q64 & np.uint64(bits)) == 0


def mask_from_nans(*arrays) -> np.ndarray:
    """True where every array is finite (False at any NaN or inf), e.g. ``mask_from_nans(data, err)``.

    The arrays must be numeric and all of the same shape.
    """
    if not arrays:
        raise ValueError("mask_from_nans needs at least one array")
    out = None
    for i, a in enumerate(arrays, 1):
        arr = np.asarray(a)
        if arr.dtype.kind not in "biufc":
            raise ValueError(f"array {i} must be numeric, got dtype {arr.dtype}")
        if arr.ndim == 0:
            raise ValueError(f"array {i} must be an image, got a single number")
        if out is not None and arr.shape != out.shape:
            raise ValueError(f"array {i} has shape {arr.shape} but array 1 has shape {out.shape}")
        finite = np.isfinite(arr)
        out = finite if out is None else out & finite
    return out


# -- regions ---------------------------------------------------------------------------------------------

def _finite(region: str, **values) -> None:
    bad = [k for k, v in values.items() if not is_number(v) or not math.isfinite(v)]
    if bad:
        raise ValueError(f"{region}: {', '.join(bad)} must be finite numbers, got "
                         f"{ {k: values[k] for k in bad} }")


def _positive(region: str, **values) -> None:
    bad = [k for k, v in values.items() if not v > 0]
    if bad:
        raise ValueError(f"{region}: {', '.join(bad)} must be positive, got { {k: values[k] for k in bad} }")


def _sky_centre(region: str, dec: float) -> None:
    if not -90 <= dec <= 90:
        raise ValueError(f"{region}: dec must be within [-90, 90] degrees, got {dec}")


@dataclass(frozen=True)
class PixelCircle:
    """Pixels whose centre is within ``radius`` pixels of ``(row, col)`` (pixel coordinates)."""

    row: float
    col: float
    radius: float

    def __post_init__(self):
        _finite("PixelCircle", row=self.row, col=self.col, radius=self.radius)
        _positive("PixelCircle", radius=self.radius)


@dataclass(frozen=True)
class PixelBox:
    """Pixels whose centre has ``|r - row| <= half_rows`` and ``|c - col| <= half_cols`` (pixels)."""

    row: float
    col: float
    half_rows: float
    half_cols: float

    def __post_init__(self):
        _finite("PixelBox", row=self.row, col=self.col, half_rows=self.half_rows, half_cols=self.half_cols)
        _positive("PixelBox", half_rows=self.half_rows, half_cols=self.half_cols)


@dataclass(frozen=True)
class SkyCircle:
    """Pixels whose centre is within ``radius`` arcsec (great-circle distance) of ``(ra, dec)`` (degrees)."""

    ra: float
    dec: float
    radius: float

    def __post_init__(self):
        _finite("SkyCircle", ra=self.ra, dec=self.dec, radius=self.radius)
        _positive("SkyCircle", radius=self.radius)
        _sky_centre("SkyCircle", self.dec)


@dataclass(frozen=True)
class SkyBox:
    """A box on the sky aligned with RA/Dec at its centre ``(ra, dec)`` (degrees).

    A pixel is inside when the gnomonic (tangent-plane) offsets of its centre from ``(ra, dec)`` are at
    most ``half_ra`` arcsec east-west (along RA on the sky, i.e. ``dRA cos(dec)``) and ``half_dec`` arcsec
    north-south.
    """

    ra: float
    dec: float
    half_ra: float
    half_dec: float

    def __post_init__(self):
        _finite("SkyBox", ra=self.ra, dec=self.dec, half_ra=self.half_ra, half_dec=self.half_dec)
        _positive("SkyBox", half_ra=self.half_ra, half_dec=self.half_dec)
        _sky_centre("SkyBox", self.dec)


Region = PixelCircle | PixelBox | SkyCircle | SkyBox


def _window(shape, centre_rc, half_px) -> tuple[slice, slice] | None:
    """Rows and columns within ``half_px`` (per axis) of ``centre_rc``, clipped to the image (or None)."""
    (r0, c0), (hr, hc) = centre_rc, half_px
    rows = (max(0, math.floor(r0 - hr)), min(shape[0], math.ceil(r0 + hr) + 1))
    cols = (max(0, math.floor(c0 - hc)), min(shape[1], math.ceil(c0 + hc) + 1))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return None
    return slice(*rows), slice(*cols)


def _sky_offsets(wcs, rows, cols, ra0, dec0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tangent-plane offsets (east, north) and great-circle distance of pixel centres from (ra0, dec0).

    All three in arcsec; NaN where the WCS gives no sky position.
    """
    ra, dec = wcs.pixel_to_world_values(cols, rows)
    a, d = np.radians(ra - ra0), np.radians(dec)
    a0 = math.radians(dec0)
    cosc = math.sin(a0) * np.sin(d) + math.cos(a0) * np.cos(d) * np.cos(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        east = np.cos(d) * np.sin(a) / cosc
        north = (math.cos(a0) * np.sin(d) - math.sin(a0) * np.cos(d) * np.cos(a)) / cosc
    east = np.where(cosc > 0, east, np.inf)  # the far hemisphere is outside every box
    north = np.where(cosc > 0, north, np.inf)
    # haversine distance (accurate at small separations)
    h = np.sin((d - a0) / 2) ** 2 + math.cos(a0) * np.cos(d) * np.sin(a / 2) ** 2
    dist = 2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    to_arcsec = math.degrees(1.0) * 3600.0
    return east * to_arcsec, north * to_arcsec, dist * to_arcsec


def _sky_window(shape, wcs, ra, dec, half_arcsec: float):
    """Pixel window that holds every pixel within ``half_arcsec`` of (ra, dec), or None (off the image)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    x, y = wcs.world_to_pixel_values(ra, dec)
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    # arcsec per pixel: wcslib gives celestial axes in degrees (as pixel_to_world_values returns them)
    scale = float(np.min(proj_plane_pixel_scales(wcs))) * 3600.0
    # 1.5 and 2 pixels of margin allow for distortion and skew; the exact test is done on the sky
    half = 1.5 * half_arcsec / scale + 2.0
    return _window(shape, (float(y), float(x)), (half, half))


def _inside(region, shape, wcs) -> np.ndarray:
    """Boolean image: True where the pixel centre is inside ``region``."""
    out = np.zeros(shape, bool)
    if isinstance(region, PixelCircle | PixelBox):
        half = ((region.radius, region.radius) if isinstance(region, PixelCircle)
                else (region.half_rows, region.half_cols))
        win = _window(shape, (region.row, region.col), half)
        if win is None:
            return out
        r, c = np.mgrid[win]
        if isinstance(region, PixelCircle):
            out[win] = (r - region.row) ** 2 + (c - region.col) ** 2 <= region.radius**2
        else:
            out[win] = ((np.abs(r - region.row) <= region.half_rows)
                        & (np.abs(c - region.col) <= region.half_cols))
        return out
    if wcs is None:
        raise ValueError(f"{type(region).__name__} regions are on the sky: region_mask needs the image's wcs")
    reach = (region.radius if isinstance(region, SkyCircle) else math.hypot(region.half_ra, region.half_dec))
    win = _sky_window(shape, wcs, region.ra, region.dec, reach)
    if win is None:
        return out
    r, c = np.mgrid[win]
    east, north, sep = _sky_offsets(wcs, r.astype(float), c.astype(float), region.ra, region.dec)
    if isinstance(region, SkyCircle):
        out[win] = sep <= region.radius
    else:
        out[win] = (np.abs(east) <= region.half_ra) & (np.abs(north) <= region.half_dec)
    return out


def region_mask(shape, regions: Region | Iterable[Region], wcs=None, *,
                keep_inside: bool = False) -> np.ndarray:
    """A mask that excludes user regions (True = use), or with ``keep_inside`` keeps only them.

    Args:
        shape: image shape ``(rows, cols)`` in pixels.
        regions: one region or a list of them: :class:`PixelCircle` / :class:`PixelBox` (pixel
            coordinates and sizes) or :class:`SkyCircle` / :class:`SkyBox` (RA/Dec in degrees, sizes in
            arcsec). A region that misses the image changes nothing.
        wcs: celestial astropy WCS of the image (0-based pixels); needed for sky regions only.
        keep_inside: False (default): pixels inside any region are masked (e.g. bright stars, artefacts).
            True: only pixels inside some region are used (e.g. a fitting window).

    Raises:
        ValueError: a bad shape, region or WCS, or "the mask hides every pixel" when no pixel is left.
    """
    shape = shape2("shape", shape)
    items = [regions] if isinstance(regions, Region) else list(regions)
    wrong = [type(r).__name__ for r in items if not isinstance(r, Region)]
    if wrong:
        raise ValueError(f"regions must be PixelCircle, PixelBox, SkyCircle or SkyBox, got {wrong}")
    if wcs is not None:
        wcs = celestial_wcs("wcs", wcs)
    inside = np.zeros(shape, bool)
    for region in items:
        inside |= _inside(region, shape, wcs)
    use = inside if keep_inside else ~inside
    if not use.any():
        where = "no pixel lies inside the regions" if keep_inside else "the regions cover the whole image"
        raise ValueError(f"{_EMPTY}: {where} ({len(items)} region(s), image shape {shape})")
    return use


# -- combining and splitting -----------------------------------------------------------------------------

def _bool_mask(i: int, m) -> np.ndarray:
    arr = np.asarray(m)
    if arr.dtype != bool:
        raise ValueError(f"mask {i} must be boolean (True = use the pixel), got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"mask {i} must be an image, got a single value")
    return arr


def combine(*masks) -> np.ndarray:
    """Logical AND of boolean masks of one shape (True = use); a ``None`` stands for "use every pixel".

    Raises:
        ValueError: a non-boolean mask, shapes that differ, no mask at all, or "the mask hides every
            pixel" when no pixel is used by all of them.
    """
    given = [(i, _bool_mask(i, m)) for i, m in enumerate(masks, 1) if m is not None]
    if not given:
        raise ValueError("combine needs at least one mask (None entries only stand for 'use every pixel')")
    i0, out = given[0]
    out = out.copy()
    for i, m in given[1:]:
        if m.shape != out.shape:
            raise ValueError(f"mask {i} has shape {m.shape} but mask {i0} has shape {out.shape}")
        out &= m
    if not out.any():
        raise ValueError(f"{_EMPTY}: no pixel is used by all {len(given)} mask(s)")
    return out


class HoldoutSplit(NamedTuple):
    """Disjoint boolean masks whose union is the used pixels: ``fit`` to fit, ``held`` to validate."""

    fit: np.ndarray
    held: np.ndarray


def holdout_split(use, fraction: float, seed, block: int = 1) -> HoldoutSplit:
    """Split the used pixels into fitted and held-out pixels, reproducibly from ``seed``.

    Args:
        use: boolean image, True = usable pixel (e.g. from :func:`combine`).
        fraction: share of the used pixels to hold out, strictly between 0 and 1.
        seed: seed of a :func:`numpy.random.default_rng` generator (an int, a SeedSequence or a
            Generator); the same seed gives the same split.
        block: side of the held-out blocks in pixels. 1 (default): exactly
            ``round(fraction * n_used)`` pixels drawn at random. ``k > 1``: the image is tiled into
            ``k x k`` blocks aligned with pixel ``[0, 0]`` and whole blocks are held out in random order,
            so most held-out pixels are not next to fitted ones (a fairer test of a smooth model). The
            number of held-out blocks is the one that brings the held-out pixel count closest to
            ``fraction * n_used`` (at least one block is held out and one kept), so the count is off
            by at most half a block's used pixels unless a single block is already too many.

    Returns:
        ``HoldoutSplit(fit, held)``: disjoint boolean masks with ``fit | held == use``, both non-empty.
    """
    use = _bool_mask(1, use)
    if not is_number(fraction) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be a number strictly between 0 and 1, got {fraction!r}")
    if not is_int(block) or block < 1:
        raise ValueError(f"block must be a positive integer (pixels), got {block!r}")
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an int, a SeedSequence or a numpy Generator, got {seed!r}")
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as err:
        raise ValueError(f"seed must be an int, a SeedSequence or a numpy Generator, got {seed!r} ({err})") \
            from None
    n = int(use.sum())
    if n < 2:
        raise ValueError(f"holdout_split needs at least 2 used pixels, got {n}"
                         + (f" ({_EMPTY})" if n == 0 else ""))
    held = np.zeros(use.shape, bool)
    if block == 1:
        k = int(round(fraction * n))
        if not 0 < k < n:
            raise ValueError(f"fraction {fraction} of {n} used pixels holds out {k} pixel(s); the fitted and "
                             "held-out sets must both be non-empty")
        flat = np.flatnonzero(use)
        held.flat[rng.choice(flat, size=k, replace=False)] = True
        return HoldoutSplit(use & ~held, held)
    if use.ndim != 2:
        raise ValueError(f"block hold-out needs a 2-D image, got shape {use.shape}")
    rows, cols = use.shape
    ids = (np.arange(rows)[:, None] // block) * (-(-cols // block)) + np.arange(cols)[None, :] // block
    counts = np.bincount(ids[use], minlength=int(ids.max()) + 1)
    blocks = np.flatnonzero(counts)
    if blocks.size < 2:
        raise ValueError(f"block hold-out needs used pixels in at least 2 blocks of {block}x{block} pixels; "
                         f"the {n} used pixel(s) are in {blocks.size}")
    order = rng.permutation(blocks)
    total = np.cumsum(counts[order])[:-1]  # hold out 1 .. all-but-one blocks
    m = int(np.argmin(np.abs(total - fraction * n))) + 1
    held = use & np.isin(ids, order[:m])
    return HoldoutSplit(use & ~held, held)
