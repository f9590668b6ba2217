"""Reprojection of a scene onto a channel's pixels as a precomputed, flux-conserving linear map.

A *scene* is the sky on a pixel grid with an astropy WCS; a *channel* (an instrument, band or exposure)
sees it on its own pixel grid, with its own WCS and PSF. This module gives the pieces of that response,
built once on the host (numpy/astropy) and applied in JAX: :class:`PixelMap` is reprojection
scene -> channel, applied by :func:`apply` (a gather and a weighted sum) with its arrays passed as jit
arguments. PSF convolution is in :mod:`starmodels.sky.convolve`, PSF images in
:mod:`starmodels.sky.psf_images`.

Conventions
-----------
Arrays are indexed ``[row, col]`` = ``[y, x]``. Astropy pixel coordinates are ``(x, y) = (col, row)``,
0-based: the centre of pixel ``[i, j]`` is at ``(x, y) = (j, i)`` and the pixel covers
``[j - 1/2, j + 1/2] x [i - 1/2, i + 1/2]``. Shapes are ``(rows, cols)`` = ``(H, W)``.

A scene holds *flux per scene pixel* and a channel image *flux per channel pixel*, in the same flux unit
(whatever the user chose, e.g. electrons/s or Jy). Surface brightness is flux per unit solid angle.
Pixel scales are in arcsec per pixel and pixel areas in arcsec^2.

A PSF image has odd sides and is centred on its middle pixel ``[(h - 1) / 2, (w - 1) / 2]``; its values
are the fraction of a point source's flux falling in each pixel (it sums to 1). Parametric PSF widths
are in pixels and angles in radians.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area

from starmodels.sky.checks import is_int, shape2

#: Largest number of sub-points per side of a channel pixel chosen by :func:`default_oversample`.
MAX_OVERSAMPLE = 32

#: Sub-points mapped through the WCSs per batch in :meth:`PixelMap.build` (bounds the memory used).
_CHUNK_POINTS = 1 << 19


def celestial_wcs(name: str, wcs) -> WCS:
    """The 2-D celestial part of an astropy WCS, or a ValueError saying why there is none."""
    if not isinstance(wcs, WCS):
        raise ValueError(f"{name} must be an astropy.wcs.WCS, got {type(wcs).__name__}")
    if not wcs.has_celestial:
        raise ValueError(f"{name} is not celestial (CTYPE {list(wcs.wcs.ctype)}): it needs a longitude "
                         "and a latitude axis, e.g. RA---TAN / DEC--TAN")
    cel = wcs.celestial if wcs.naxis > 2 else wcs
    if cel.naxis != 2:
        raise ValueError(f"{name}: its celestial part has {cel.naxis} axes, expected 2")
    return cel


def pixel_area_arcsec2(wcs: WCS) -> float:
    """Area of a pixel at the reference point of a celestial WCS, arcsec^2 (projection plane)."""
    units = [u.Unit(c) if str(c) else u.deg for c in wcs.wcs.cunit]
    return float(proj_plane_pixel_area(wcs)) * float(units[0].to(u.arcsec) * units[1].to(u.arcsec))


def default_oversample(scale_ratio: float) -> int:
    """Sub-points per side of a channel pixel: ``min(32, max(2, ceil(3 * scale_ratio)))``.

    ``scale_ratio`` is the channel pixel scale over the scene pixel scale (dimensionless; e.g.
    0.168 / 0.03 = 5.6). A channel pixel then spans ``scale_ratio`` scene pixels per side and its
    ``m`` sub-points sample each of them about 3 times per side (9 times in all), so the integral of
    the bilinear interpolant over the channel pixel is accurate; at least 2 per side so a kink of the
    interpolant inside a small channel pixel is resolved. The cap of :data:`MAX_OVERSAMPLE` (reached
    for ``scale_ratio > 10.7``) bounds the build cost (``m^2`` WCS evaluations per channel pixel);
    pass ``oversample`` explicitly to go beyond it.
    """
    r = float(scale_ratio)
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"scale_ratio must be a finite number > 0, got {scale_ratio!r}")
    return int(min(MAX_OVERSAMPLE, max(2, math.ceil(3.0 * r - 1e-9))))


# ----------------------------------------------------------------------------------------------------
# reprojection
# ----------------------------------------------------------------------------------------------------

def _bilinear(xs, ys, scene_shape):
    """Bilinear gather of the scene at scene pixel coordinates ``(xs, ys)`` (any equal shapes).

    Returns ``(index, weight, inside)`` with a trailing axis of 4 corners for index/weight.
    Points in the outer half pixel of the scene (between the edge pixels' centres and the scene
    edge) take the edge value (constant extrapolation), so the interpolation weights of every
    point inside ``[-1/2, W - 1/2] x [-1/2, H - 1/2]`` sum to 1 (partition of unity).
    """
    hs, ws = scene_shape
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(xs) & np.isfinite(ys) & (xs >= -0.5) & (xs <= ws - 0.5)
                  & (ys >= -0.5) & (ys <= hs - 0.5))
    xs = np.where(inside, xs, 0.0)
    ys = np.where(inside, ys, 0.0)
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = xs - x0, ys - y0
    ix0, iy0 = np.clip(x0, 0, ws - 1).astype(np.int64), np.clip(y0, 0, hs - 1).astype(np.int64)
    ix1, iy1 = np.clip(x0 + 1, 0, ws - 1).astype(np.int64), np.clip(y0 + 1, 0, hs - 1).astype(np.int64)
    index = np.stack([iy0 * ws + ix0, iy0 * ws + ix1, iy1 * ws + ix0, iy1 * ws + ix1], axis=-1)
    weight = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    weight = weight * inside[..., None]
    return index, weight, inside


def _merge_rows(index, weight, sentinel):
    """Merge duplicate indices within each row (summing weights); zero weights are dropped.

    Rows are padded with index 0 and weight 0 to the largest number of distinct indices.
    """
    n = index.shape[0]
    index = np.where(weight != 0, index, sentinel)
    order = np.argsort(index, axis=1, kind="stable")
    idx = np.take_along_axis(index, order, axis=1)
    w = np.take_along_axis(weight, order, axis=1)
    new = np.ones(idx.shape, dtype=bool)
    new[:, 1:] = idx[:, 1:] != idx[:, :-1]
    group = np.cumsum(new, axis=1) - 1
    k = int(group[:, -1].max()) + 1
    flat = (np.arange(n)[:, None] * k + group).ravel()
    out_w = np.bincount(flat, weights=w.ravel(), minlength=n * k).reshape(n, k)
    out_i = np.zeros(n * k, dtype=np.int64)
    out_i[flat] = idx.ravel()
    out_i = out_i.reshape(n, k)
    unused = out_i == sentinel
    out_i[unused] = 0
    out_w[unused] = 0.0
    # the sentinel group (if any) is last in its row; drop a trailing all-zero column
    while k > 1 and not out_w[:, -1].any() and not out_i[:, -1].any():
        out_i, out_w, k = out_i[:, :-1], out_w[:, :-1], k - 1
    return out_i, out_w


def _build_gather(to_scene: Callable, scene_shape, channel_shape, m: int, fallback_ratio: float):
    """Dense gather arrays of the flux-conserving map scene -> channel for a pixel mapping ``to_scene``.

    ``to_scene(x, y)`` maps channel pixel coordinates to scene pixel coordinates (1-D float arrays,
    NaN where undefined). Each channel pixel's area in scene pixels is the area of the quadrilateral
    of its mapped corners (the local Jacobian; ``fallback_ratio`` where a corner is undefined).
    Returns ``(index (n, K) int64, weight (n, K) float64, coverage (Hc, Wc) float64)``; raises a
    ValueError if no channel pixel sees the scene.
    """
    hs, ws = scene_shape
    hc, wc = channel_shape
    # 1) corners of every channel pixel: cheap, finds the pixels that can see the scene and their areas
    gy, gx = np.meshgrid(np.arange(hc + 1) - 0.5, np.arange(wc + 1) - 0.5, indexing="ij")
    cx, cy = to_scene(gx.ravel(), gy.ravel())
    cx, cy = cx.reshape(hc + 1, wc + 1), cy.reshape(hc + 1, wc + 1)
    qx = np.stack([cx[:-1, :-1], cx[:-1, 1:], cx[1:, 1:], cx[1:, :-1]])
    qy = np.stack([cy[:-1, :-1], cy[:-1, 1:], cy[1:, 1:], cy[1:, :-1]])
    finite = np.all(np.isfinite(qx) & np.isfinite(qy), axis=0)
    with np.errstate(invalid="ignore"):
        overlaps = ((qx.max(0) >= -0.5) & (qx.min(0) <= ws - 0.5)
                    & (qy.max(0) >= -0.5) & (qy.min(0) <= hs - 0.5))
        area = 0.5 * np.abs((qx[2] - qx[0]) * (qy[3] - qy[1]) - (qy[2] - qy[0]) * (qx[3] - qx[1]))
    area = np.where(finite, area, fallback_ratio)
    candidate = np.flatnonzero((~finite | overlaps).ravel())
    if candidate.size == 0:
        raise ValueError(f"the channel and the scene do not overlap: no channel pixel of the channel "
                         f"{hc}x{wc} sees the scene {hs}x{ws} (check the WCSs' CRVAL/CRPIX)")

    # 2) m x m sub-points in the candidate pixels, in batches
    offsets = (np.arange(m) + 0.5) / m - 0.5
    oy, ox = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    area_flat = area.ravel()
    coverage = np.zeros(hc * wc)
    parts = []
    step = max(1, _CHUNK_POINTS // (m * m))
    sentinel = hs * ws
    for start in range(0, candidate.size, step):
        rows = candidate[start:start + step]
        py = (rows // wc)[:, None] + oy[None, :]
        px = (rows % wc)[:, None] + ox[None, :]
        sx, sy = to_scene(px.ravel(), py.ravel())
        index, weight, inside = _bilinear(sx.reshape(px.shape), sy.reshape(px.shape), scene_shape)
        weight = weight * (area_flat[rows] / (m * m))[:, None, None]
        coverage[rows] = inside.mean(axis=1)
        idx, w = _merge_rows(index.reshape(len(rows), -1), weight.reshape(len(rows), -1), sentinel)
        parts.append((rows, idx, w))
    if not coverage.any():
        raise ValueError(f"the channel and the scene do not overlap: no channel pixel of the channel "
                         f"{hc}x{wc} sees the scene {hs}x{ws} (check the WCSs' CRVAL/CRPIX)")
    k = max(p[1].shape[1] for p in parts)
    index = np.zeros((hc * wc, k), dtype=np.int64)
    weight = np.zeros((hc * wc, k))
    for rows, idx, w in parts:
        index[rows, : idx.shape[1]] = idx
        weight[rows, : w.shape[1]] = w
    return index, weight, coverage.reshape(hc, wc)


def _wcs_mapping(channel_wcs: WCS, scene_wcs: WCS) -> Callable:
    """Channel pixel (x, y) -> scene pixel (x, y) through the sky (frames converted by astropy)."""

    def to_scene(x, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sky = channel_wcs.pixel_to_world(x, y)
            xs, ys = scene_wcs.world_to_pixel(sky)
        return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)

    return to_scene


def apply(scene, index, weight, channel_shape: tuple[int, int] | None = None):
    """Apply a precomputed reprojection: ``channel = sum_k weight[:, k] * scene.ravel()[index[:, k]]``.

    Pure JAX (jit-able, differentiable in ``scene`` and ``weight``). Pass ``index`` and ``weight``
    as arguments of the jitted function (see :meth:`PixelMap.arrays`) so they are not compiled in
    as constants; ``channel_shape`` must be static (Python ints), not an argument of the jit.

    Parameters
    ----------
    scene:
        ``(..., Hs, Ws)``: flux per scene pixel (any leading batch axes).
    index:
        ``(Hc * Wc, K)`` integers: indices into the flattened ``(Hs * Ws)`` scene.
    weight:
        ``(Hc * Wc, K)``: dimensionless weights (fraction of a scene pixel's flux per channel pixel).
    channel_shape:
        ``(Hc, Wc)``; ``None`` returns the flattened ``(..., Hc * Wc)`` channel.

    Returns
    -------
    ``(..., Hc, Wc)``: flux per channel pixel, in the scene's flux unit.
    """
    scene = jnp.asarray(scene)
    flat = scene.reshape(scene.shape[:-2] + (-1,))
    values = jnp.take(flat, index, axis=-1, mode="clip")
    out = jnp.sum(values * weight, axis=-1)
    return out if channel_shape is None else out.reshape(scene.shape[:-2] + tuple(channel_shape))


@dataclass(frozen=True, eq=False)
class PixelMap:
    """Reprojection of a scene onto a channel's pixels as a precomputed, flux-conserving linear map.

    Build it with :meth:`build`. Each channel pixel is split into ``m x m`` sub-pixels (``m`` =
    :attr:`oversample`); the centre of each is mapped through the two WCSs to scene pixel coordinates,
    where the scene's surface brightness (flux per scene pixel / scene pixel area) is interpolated
    bilinearly and multiplied by the sub-pixel's area. As the ratio of the areas, the *local* area of
    the channel pixel in scene pixels is used (the area of the quadrilateral of its four mapped
    corners, i.e. the Jacobian of the pixel-to-pixel mapping), so distortions and the change of pixel
    solid angle across a wide field are followed; for a small TAN field it equals
    ``channel_pixel_area / scene_pixel_area``. The map is then flux-conserving in both directions:
    every scene pixel's flux is spread over the channel with weights summing to 1 up to the sub-pixel
    quadrature error, whether channel pixels are larger or smaller than the scene's. With the default
    ``oversample`` that error is < 1 % per scene pixel inside the scene (about 1e-4 for a finer
    channel), up to ~10 % for the scene's outermost pixels, whose hard edge the sub-points sample
    coarsely, and ~1e-5 for the total flux of a scene inside the channel. It is the
    scene's bilinear interpolant integrated over each channel pixel, so it smooths by the bilinear
    kernel (variance 1/6 scene pixel^2 per axis) as well as by the channel pixel itself.

    Scene pixels extend to the scene's edge: between the centres of the edge pixels and the edge the
    surface brightness is the edge pixel's (constant extrapolation). Sub-points outside the scene get
    weight 0 and reduce :attr:`coverage`.

    Attributes
    ----------
    scene_shape, channel_shape:
        ``(Hs, Ws)`` and ``(Hc, Wc)``.
    oversample:
        ``m``, sub-points per side of a channel pixel.
    index:
        ``(Hc * Wc, K)`` int32, indices into the flattened scene (row-major, ``i * Ws + j``).
        Duplicates within a row are merged; unused slots have index 0 and weight 0.
    weight:
        ``(Hc * Wc, K)`` float32, dimensionless.
    coverage:
        ``(Hc, Wc)`` float64, the fraction of each channel pixel's sub-points that fall on the scene
        (1: fully covered, 0: sees none of it).
    scene_pixel_area, channel_pixel_area:
        Pixel areas at the WCS reference points (``proj_plane_pixel_area``), arcsec^2; informative
        (the weights use the local areas described above).
    """

    scene_shape: tuple[int, int]
    channel_shape: tuple[int, int]
    oversample: int
    index: np.ndarray
    weight: np.ndarray
    coverage: np.ndarray
    scene_pixel_area: float
    channel_pixel_area: float

    def __post_init__(self):
        n = self.channel_shape[0] * self.channel_shape[1]
        if self.index.shape != self.weight.shape or self.index.ndim != 2 or self.index.shape[0] != n:
            raise ValueError(f"PixelMap index {self.index.shape} and weight {self.weight.shape} must both "
                             f"have shape ({n}, K) for the channel {self.channel_shape}")
        for name in ("index", "weight", "coverage"):
            getattr(self, name).setflags(write=False)

    @classmethod
    def build(cls, scene_wcs: WCS, scene_shape: tuple[int, int], channel_wcs: WCS,
              channel_shape: tuple[int, int], oversample: int | None = None) -> PixelMap:
        """Build the map from the scene's grid to the channel's grid (host side, numpy/astropy).

        Parameters
        ----------
        scene_wcs, channel_wcs:
            Celestial astropy WCSs (only the celestial axes of a WCS with more than 2 axes are used;
            SIP distortions are followed; the two may be in different celestial frames).
        scene_shape, channel_shape:
            ``(rows, cols)`` of each grid.
        oversample:
            Sub-points per side of a channel pixel; default :func:`default_oversample` of the ratio
            of pixel scales ``sqrt(channel_pixel_area / scene_pixel_area)`` at the reference points.

        Raises
        ------
        ValueError
            Shapes not 2-D positive, a WCS not celestial, a bad ``oversample``, or no overlap
            (no channel pixel sees the scene).

        Cost: ``(Hc + 1)(Wc + 1)`` WCS evaluations to find the channel pixels near the scene, then
        ``m^2`` per such pixel (astropy maps about 2 million points per second).
        """
        scene_shape = shape2("scene_shape", scene_shape)
        channel_shape = shape2("channel_shape", channel_shape)
        scene_cel = celestial_wcs("scene_wcs", scene_wcs)
        channel_cel = celestial_wcs("channel_wcs", channel_wcs)
        a_scene, a_channel = pixel_area_arcsec2(scene_cel), pixel_area_arcsec2(channel_cel)
        if not (a_scene > 0 and a_channel > 0):
            raise ValueError(f"WCS pixel areas must be > 0, got scene {a_scene} and channel {a_channel} "
                             "arcsec^2 (singular CD/PC matrix?)")
        if oversample is None:
            oversample = default_oversample(math.sqrt(a_channel / a_scene))
        elif not is_int(oversample) or oversample < 1:
            raise ValueError(f"oversample must be an integer >= 1, got {oversample!r}")
        index, weight, coverage = _build_gather(_wcs_mapping(channel_cel, scene_cel), scene_shape,
                                                channel_shape, int(oversample), a_channel / a_scene)
        if scene_shape[0] * scene_shape[1] >= 2**31:
            raise ValueError(f"scene {scene_shape} is too large for int32 indices")
        return cls(scene_shape, channel_shape, int(oversample), index.astype(np.int32),
                   weight.astype(np.float32), coverage, a_scene, a_channel)

    @property
    def n_terms(self) -> int:
        """``K``: the number of scene pixels gathered per channel pixel."""
        return self.index.shape[1]

    def arrays(self, pad_to: int | None = None) -> dict[str, jax.Array]:
        """``{"index": ..., "weight": ...}`` as JAX arrays, to pass to a jitted :func:`apply`.

        ``pad_to``: widen ``K`` to this many terms (index 0, weight 0), so maps of several channels
        or exposures with the same shapes can share one compiled function (or be stacked for vmap).
        """
        index, weight = self.index, self.weight
        if pad_to is not None:
            if not is_int(pad_to) or pad_to < self.n_terms:
                raise ValueError(f"pad_to must be an integer >= n_terms = {self.n_terms}, got {pad_to!r}")
            extra = ((0, 0), (0, int(pad_to) - self.n_terms))
            index, weight = np.pad(index, extra), np.pad(weight, extra)
        return {"index": jnp.asarray(index), "weight": jnp.asarray(weight)}

    @cached_property
    def _device_arrays(self):
        return self.arrays()

    def __call__(self, scene):
        """The channel image ``(..., Hc, Wc)`` (flux per channel pixel) of a scene ``(..., Hs, Ws)``.

        The map's arrays are constants of any enclosing jit; to pass them as arguments use
        :meth:`arrays` with :func:`apply`.
        """
        shape = tuple(np.shape(scene)[-2:])
        if shape != self.scene_shape:
            raise ValueError(f"scene has shape {shape}, the PixelMap was built for {self.scene_shape}")
        arrays = self._device_arrays
        return apply(scene, arrays["index"], arrays["weight"], self.channel_shape)
