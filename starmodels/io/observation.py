"""An observed image with its noise, mask, sky, WCS and calibration: :class:`Observation`.

Conventions used throughout :mod:`starmodels.io`:

* arrays are indexed ``[row, col]`` (numpy order, ``row`` = FITS axis 2 = y, ``col`` = FITS axis 1 = x);
* pixel coordinates are 0-based with the *centre* of pixel ``[0, 0]`` at ``(row, col) = (0, 0)``
  (astropy's convention; FITS ``CRPIX`` is 1-based);
* ``mask`` is True where a pixel is used; masked pixels may hold any value (NaN included);
* ``variance`` and ``sky`` are in the units of ``data`` (squared for the variance).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np


class ObservationError(ValueError):
    """An :class:`Observation` (or a file read into one) is invalid; the message lists every problem."""


def _native_float(a, name: str, where: str = "") -> np.ndarray:
    """``a`` as a native-byte-order float array (float32 kept, everything else float64).

    Raises :class:`ObservationError` (prefixed by ``where``, e.g. the file name) for complex-valued
    or non-numeric input: an imaginary part is never dropped silently.
    """
    arr = np.asarray(a)
    if arr.dtype.kind == "c":
        raise ObservationError(f"{where}{name}: complex-valued data (dtype {arr.dtype}) is not supported; an "
                               f"Observation holds real pixel values: pass np.real({name}) or np.abs({name}) "
                               "explicitly")
    if arr.dtype.kind not in "biuf":
        raise ObservationError(f"{where}{name} must be numeric, got dtype {arr.dtype}")
    dtype = arr.dtype if arr.dtype.kind == "f" and arr.dtype.itemsize >= 4 else np.dtype(np.float64)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _first(bad: np.ndarray, n: int = 3) -> str:
    """The first ``n`` (row, col) positions where ``bad`` is True, as text."""
    idx = [tuple(int(i) for i in p) for p in np.argwhere(bad)[:n]]
    more = ", ..." if int(bad.sum()) > n else ""
    return ", ".join(f"(row={r}, col={c})" for r, c in idx) + more


def wcs_pixel_scale(wcs) -> float:
    """Mean pixel scale of a celestial WCS in arcsec/pixel (square root of the pixel area)."""
    from astropy.wcs.utils import proj_plane_pixel_area

    return float(math.sqrt(proj_plane_pixel_area(wcs.celestial)) * 3600.0)


@dataclasses.dataclass(frozen=True, eq=False)
class Observation:
    """A 2-D image with everything needed to fit it.

    Attributes:
        data: (ny, nx) pixel values in ``unit`` (e.g. electrons, sky included for SDSS frames).
        variance: per-pixel variance in ``unit``\\ :sup:`2`, same shape, or None if unknown.
        mask: boolean (ny, nx), True = use the pixel; None means every pixel is used.
        wcs: celestial :class:`astropy.wcs.WCS` of ``data`` (0-based pixels), or None.
        pixel_scale: arcsec/pixel; derived from ``wcs`` when not given.
        gain: electrons per detector count (ADU), or None.
        sky: sky level included in ``data`` (scalar or (ny, nx) array, units of ``data``), or None.
        unit: unit of ``data``, e.g. ``"electron"``, ``"nanomaggy"``, ``"count"``.
        meta: free-form metadata. ``meta["origin"] = (row0, col0)`` is the position of pixel
            ``[0, 0]`` in the original (parent) frame. Any ndarray value of the same shape as
            ``data`` is a per-pixel map and is cut out / resampled together with ``data``.

    Construction validates the observation (see :meth:`problems`) and raises
    :class:`ObservationError` listing every problem at once.
    """

    data: np.ndarray
    variance: np.ndarray | None = None
    mask: np.ndarray | None = None
    wcs: Any = None
    pixel_scale: float | None = None
    gain: float | None = None
    sky: np.ndarray | float | None = None
    unit: str = ""
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        name = (self.meta or {}).get("name") or (self.meta or {}).get("source")
        where = f"{name}: " if name else ""
        set_("data", _native_float(self.data, "data", where))
        if self.variance is not None:
            set_("variance", _native_float(self.variance, "variance", where))
        if self.mask is not None:
            set_("mask", np.asarray(self.mask))
        if self.sky is not None:
            sky = _native_float(self.sky, "sky", where)
            set_("sky", float(sky) if sky.ndim == 0 else sky)
        if self.pixel_scale is None and self.wcs is not None and getattr(self.wcs, "has_celestial", False):
            set_("pixel_scale", wcs_pixel_scale(self.wcs))
        if self.gain is not None:
            set_("gain", float(self.gain))
        set_("meta", dict(self.meta))
        self.validate()

    # -- basic properties ---------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (rows, cols) in pixels."""
        return tuple(self.data.shape)

    @property
    def sigma(self) -> np.ndarray | None:
        """Per-pixel standard deviation, sqrt(variance), in ``unit`` (None without a variance)."""
        return None if self.variance is None else np.sqrt(self.variance)

    @property
    def use(self) -> np.ndarray:
        """Boolean map of the used pixels (all True when ``mask`` is None)."""
        return np.ones(self.shape, bool) if self.mask is None else self.mask

    @property
    def ivar(self) -> np.ndarray | None:
        """Inverse variance with masked pixels set to 0 (None without a variance)."""
        if self.variance is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.use, 1.0 / self.variance, 0.0)

    # -- validation -----------------------------------------------------------
    def problems(self, require_wcs: bool = False) -> list[str]:
        """Every problem with this observation, as readable sentences (empty list when valid)."""
        out: list[str] = []
        d = self.data
        if d.ndim != 2:
            return [f"data must be 2-D, got shape {d.shape}"]
        if d.size == 0:
            return [f"data is empty (shape {d.shape})"]
        use = np.ones(d.shape, bool)
        if self.mask is not None:
            if self.mask.dtype != bool:
                out.append(f"mask must be boolean (True = use the pixel), got dtype {self.mask.dtype}")
            elif self.mask.shape != d.shape:
                out.append(f"mask shape {self.mask.shape} != data shape {d.shape}")
            else:
                use = self.mask
                if not use.any():
                    out.append("the mask excludes every pixel")
        bad = ~np.isfinite(d) & use
        if bad.any():
            out.append(f"data has {int(bad.sum())} non-finite (NaN/inf) pixel(s) that are not masked: "
                       f"{_first(bad)}")
        if self.variance is not None:
            v = self.variance
            if v.shape != d.shape:
                out.append(f"variance shape {v.shape} != data shape {d.shape}")
            else:
                with np.errstate(invalid="ignore"):
                    badv = ~(np.isfinite(v) & (v > 0)) & use
                if badv.any():
                    out.append(f"variance is non-positive or non-finite at {int(badv.sum())} used pixel(s): "
                               f"{_first(badv)}")
        if self.sky is not None:
            if np.ndim(self.sky) == 0:
                if not math.isfinite(self.sky):
                    out.append(f"sky must be finite, got {self.sky}")
            elif np.shape(self.sky) != d.shape:
                out.append(f"sky shape {np.shape(self.sky)} != data shape {d.shape}")
            else:
                bads = ~np.isfinite(self.sky) & use
                if bads.any():
                    out.append(f"sky is non-finite at {int(bads.sum())} used pixel(s): {_first(bads)}")
        if self.gain is not None and not (math.isfinite(self.gain) and self.gain > 0):
            out.append(f"gain must be positive and finite, got {self.gain}")
        if self.wcs is None:
            if require_wcs:
                out.append("a WCS is required but the observation has none")
        elif not getattr(self.wcs, "has_celestial", False) or self.wcs.naxis != 2:
            out.append("wcs must be a 2-D celestial astropy WCS")
        elif self.pixel_scale is not None:
            ps = wcs_pixel_scale(self.wcs)
            if not math.isclose(self.pixel_scale, ps, rel_tol=1e-3):
                out.append(f"pixel_scale {self.pixel_scale:.6g} arcsec/pixel disagrees with the WCS "
                           f"({ps:.6g})")
        if self.pixel_scale is not None and not (math.isfinite(self.pixel_scale) and self.pixel_scale > 0):
            out.append(f"pixel_scale must be positive and finite, got {self.pixel_scale}")
        return out

    def validate(self, require_wcs: bool = False) -> Observation:
        """Raise :class:`ObservationError` listing every problem; return ``self`` when valid."""
        probs = self.problems(require_wcs=require_wcs)
        if probs:
            name = self.meta.get("name") or self.meta.get("source") or "observation"
            raise ObservationError(f"invalid {name} ({len(probs)} problem(s)): " + "; ".join(probs))
        return self

    def replace(self, **changes) -> Observation:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # -- coordinates ----------------------------------------------------------
    def _need_wcs(self):
        """The WCS, or :class:`ObservationError` naming the observation when it has none."""
        if self.wcs is None:
            name = self.meta.get("name") or self.meta.get("source") or "this observation"
            raise ObservationError(f"{name} has no WCS, and sky coordinates or resampling need one: read a "
                                   "file whose header holds a celestial WCS, or pass wcs= (an astropy WCS)")
        return self.wcs

    def pixel_to_sky(self, row, col):
        """Sky position (:class:`~astropy.coordinates.SkyCoord`) of 0-based pixel ``(row, col)``."""
        return self._need_wcs().pixel_to_world(col, row)

    def sky_to_pixel(self, coord) -> tuple[np.ndarray, np.ndarray]:
        """0-based ``(row, col)`` (floats) of a :class:`~astropy.coordinates.SkyCoord`."""
        x, y = self._need_wcs().world_to_pixel(coord)
        return np.asarray(y)[()], np.asarray(x)[()]

    @property
    def center_sky(self):
        """Sky position of the image centre, pixel ((ny-1)/2, (nx-1)/2)."""
        return self.pixel_to_sky((self.shape[0] - 1) / 2, (self.shape[1] - 1) / 2)

    # -- cutouts and resampling ---------------------------------------------
    def _box_from_center(self, center, size) -> tuple[tuple[int, int], tuple[int, int]]:
        ny, nx = _size_pixels(size, self.pixel_scale)
        if isinstance(center, tuple | list) and len(center) == 2 and not hasattr(center, "frame"):
            yc, xc = float(center[0]), float(center[1])
        else:
            yc, xc = (float(v) for v in self.sky_to_pixel(center))
        # first pixel such that the box is centred on (yc, xc); exact for half-integer centres of even boxes
        y0 = math.floor(yc - (ny - 1) / 2 + 0.5)
        x0 = math.floor(xc - (nx - 1) / 2 + 0.5)
        return (y0, y0 + ny), (x0, x0 + nx)

    def cutout(self, rows=None, cols=None, *, center=None, size=None) -> Observation:
        """A sub-image, with variance, mask, sky, per-pixel meta maps and WCS cut consistently.

        Either a pixel box ``rows=(y0, y1), cols=(x0, x1)`` (half-open, 0-based, like
        ``data[y0:y1, x0:x1]``), or ``center`` (a SkyCoord, or a 0-based ``(row, col)`` pair) and
        ``size`` (``n``, ``(ny, nx)`` in pixels, or an angular Quantity / pair of Quantities). The
        box must lie inside the image. ``meta["origin"]`` of the result is the position of its pixel
        ``[0, 0]`` in the original parent frame.
        """
        if center is not None:
            if rows is not None or cols is not None:
                raise ValueError("give either rows/cols or center/size, not both")
            if size is None:
                raise ValueError("cutout by center needs a size")
            rows, cols = self._box_from_center(center, size)
        elif rows is None or cols is None:
            raise ValueError("cutout needs rows=(y0, y1) and cols=(x0, x1), or center= and size=")
        (y0, y1), (x0, x1) = (int(rows[0]), int(rows[1])), (int(cols[0]), int(cols[1]))
        ny, nx = self.shape
        if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            raise ValueError(f"cutout rows {y0}:{y1}, cols {x0}:{x1} is not inside the {ny}x{nx} image")
        sl = (slice(y0, y1), slice(x0, x1))
        cut = lambda a: None if a is None else np.array(a[sl])
        meta = {k: (np.array(v[sl]) if isinstance(v, np.ndarray) and v.shape == self.shape else v)
                for k, v in self.meta.items()}
        oy, ox = self.meta.get("origin", (0, 0))
        meta["origin"] = (int(oy) + y0, int(ox) + x0)
        meta.setdefault("parent_shape", self.shape)
        return dataclasses.replace(
            self, data=cut(self.data), variance=cut(self.variance), mask=cut(self.mask),
            sky=self.sky if np.ndim(self.sky) == 0 else cut(self.sky),
            wcs=None if self.wcs is None else self.wcs.slice(sl), meta=meta,
        )

    def resample_to(self, wcs, shape: tuple[int, int]) -> Observation:
        """This observation bilinearly resampled onto the pixel grid of ``wcs`` with ``shape``.

        Used to align bands (e.g. an SDSS i frame onto the r frame). Each output pixel is a
        weighted sum of the 4 nearest input pixels; its variance is the sum of squared weights
        times the input variances (neighbouring output pixels become correlated, which this
        ignores). Output pixels outside the input, or touching a masked input pixel, are masked
        (data NaN there when outside). ``meta`` keys ``origin`` and ``header`` are dropped.
        """
        src = self._need_wcs()
        ny, nx = int(shape[0]), int(shape[1])
        rr, cc = np.mgrid[0:ny, 0:nx]
        x, y = src.world_to_pixel(wcs.pixel_to_world(cc, rr))
        eps = 1e-6  # round-off of the pixel -> sky -> pixel trip at the edges
        inside = (y >= -eps) & (y <= self.shape[0] - 1 + eps) & (x >= -eps) & (x <= self.shape[1] - 1 + eps)
        y = np.where(inside, np.clip(y, 0, self.shape[0] - 1), 0.0)
        x = np.where(inside, np.clip(x, 0, self.shape[1] - 1), 0.0)
        iy = np.minimum(np.floor(y).astype(int), self.shape[0] - 2)
        ix = np.minimum(np.floor(x).astype(int), self.shape[1] - 2)
        fy, fx = y - iy, x - ix
        corners = [(iy, ix, (1 - fy) * (1 - fx)), (iy, ix + 1, (1 - fy) * fx),
                   (iy + 1, ix, fy * (1 - fx)), (iy + 1, ix + 1, fy * fx)]
        use_in = self.use

        def interp(a, squared=False):
            out = np.zeros((ny, nx))
            for r, c, w in corners:
                v = a[r, c]
                out += np.where(w > 0, (w * w if squared else w) * np.where(np.isfinite(v), v, 0.0), 0.0)
            return out

        mask = inside.copy()
        for r, c, w in corners:
            mask &= (w == 0) | use_in[r, c]
        dt = self.data.dtype
        outside_nan = lambda a: np.where(inside, a, np.nan).astype(dt)
        data = outside_nan(interp(self.data))
        var = None if self.variance is None else outside_nan(interp(self.variance, True))
        sky = self.sky if np.ndim(self.sky) == 0 else outside_nan(interp(self.sky))
        meta = {k: (interp(v).astype(v.dtype) if isinstance(v, np.ndarray) and v.shape == self.shape else v)
                for k, v in self.meta.items() if k not in ("origin", "parent_shape", "header")}
        meta["resampled_from"] = self.meta.get("name") or self.meta.get("source")
        return Observation(data=data, variance=var, mask=mask, wcs=wcs.deepcopy(), gain=self.gain, sky=sky,
                           unit=self.unit, meta=meta)

    def align_to(self, other: Observation) -> Observation:
        """This observation resampled onto ``other``'s pixel grid (see :meth:`resample_to`)."""
        out = self.resample_to(other._need_wcs(), other.shape)
        if "origin" in other.meta:
            out.meta["origin"] = other.meta["origin"]
        return out

    def __repr__(self) -> str:
        bits = [f"shape={self.shape}", f"unit={self.unit!r}"]
        if self.pixel_scale is not None:
            bits.append(f"pixel_scale={self.pixel_scale:.4g}\"")
        if self.gain is not None:
            bits.append(f"gain={self.gain:.4g}")
        bits.append(f"variance={'yes' if self.variance is not None else 'no'}")
        bits.append(f"masked={int((~self.use).sum())}")
        bits.append(f"wcs={'yes' if self.wcs is not None else 'no'}")
        for k in ("band", "origin"):
            if k in self.meta:
                bits.append(f"{k}={self.meta[k]!r}")
        return f"Observation({', '.join(bits)})"


def _size_pixels(size, pixel_scale: float | None) -> tuple[int, int]:
    """``size`` (int, (ny, nx), angular Quantity or pair of them) as a (ny, nx) pixel count."""
    from astropy import units as u

    def one(s) -> int:
        if isinstance(s, u.Quantity):
            if s.unit.physical_type == "angle":
                if pixel_scale is None:
                    raise ObservationError("an angular cutout size needs a WCS or pixel_scale")
                return max(1, int(round(float(s.to_value(u.arcsec)) / pixel_scale)))
            s = s.to_value(u.pix)
        n = int(round(float(s)))
        if n < 1:
            raise ValueError(f"cutout size must be at least 1 pixel, got {s}")
        return n

    if isinstance(size, u.Quantity) and size.isscalar or np.ndim(size) == 0:
        n = one(size)
        return n, n
    ny, nx = size
    return one(ny), one(nx)
