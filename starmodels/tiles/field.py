"""A multi-band cutout of a real SDSS frame set, ready for tile inference: :class:`Field`.

:func:`load_sdss_field` cuts every band at the same patch of sky. Band 0 (the reference band) is cut
at the requested box of its frame; band ``b`` at the box of its own frame whose origin is the nearest
integer to where the frames' WCS maps band 0's box; the sub-pixel remainder is ``band_offsets[b]``:
a source at ``(row, col)`` of band 0's cutout is at ``(row + drow, col + dcol)`` of band ``b``'s
cutout (``|drow|, |dcol| <= 0.5``). The offset is evaluated at the cutout centre; how much it varies
across the cutout is ``band_offset_variation`` (a few hundredths of a pixel for SDSS).

Pixels are read with :func:`starmodels.io.read_sdss_frame` (electrons, the frame's sky model added
back) and the PSF is the psField's KL PSF (:class:`starmodels.io.KLPsf`) at each band's cutout
centre, or PSF images given explicitly. Input problems that can be found from the headers alone
(box outside a frame, too small a box, duplicate or missing bands, bad PSFs) raise :class:`FieldError`
or :class:`~starmodels.image_psf.PSFError` (both ``ValueError``) before any frame is decompressed.

:func:`m2_field` is the M2 benchmark cutout of the shared SDSS data (run 2583, camcol 2, field 136).
Pixel conventions are those of :mod:`starmodels.io`: ``[row, col]``, 0-based, pixel centres at integers.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits

from starmodels.image_psf import PSFError, _psf_problems
from starmodels.io.fits import read_wcs
from starmodels.io.fits_open import FileFormatError, _compression
from starmodels.io.observation import Observation
from starmodels.io.psfield import BANDS, KLPsf
from starmodels.io.sdss import _FRAME_RE, read_sdss_frame, sdss_filename
from starmodels.io.shared_data import find_data_dir

__all__ = ["M2_ORIGIN", "M2_SIZE", "Field", "FieldError", "load_sdss_field", "m2_data_dir", "m2_field"]

PSF_SUM_TOLERANCE = 0.05
"""A PSF given as an image must sum to 1 within this fraction (else it is on another flux scale)."""
M2_RUN, M2_CAMCOL, M2_FIELD = 2583, 2, 136
M2_ORIGIN = (627, 307)
"""Frame pixel (row, col) of the r-band M2 benchmark cutout's pixel [0, 0]."""
M2_SIZE = (106, 106)
"""Rows x columns of the M2 benchmark cutout, pixels."""
DATA_ENV = "STARMODELS_SDSS_DATA"
_WORK_DATA = Path("/work/shared/data/sdss")


class FieldError(ValueError):
    """The field cannot be cut as asked (box, bands, sizes, pixels); the message names the problem."""


@dataclasses.dataclass(frozen=True, eq=False)
class Field:
    """A B-band cutout of real frames, cut at the same patch of sky in every band.

    Attributes:
        image: (B, H, W) float32 pixel values, electrons, sky included.
        sky: (B, H, W) float32 the frame's sky model at the cutout, electrons.
        psf: (B, S, S) float64 PSF stamps, odd ``S``, centred on pixel ``(S // 2, S // 2)``, each
            summing to 1.
        band_offsets: (B, 2) float64 pixels: a source at ``(row, col)`` of band 0's cutout is at
            ``(row + drow, col + dcol)`` of band ``b``'s cutout (row 0 is zero).
        bands: band names, e.g. ``("r", "i")``; band 0 is the reference.
        gain: (B,) electrons per count (ADU).
        nelec_per_nmgy: (B,) electrons per nanomaggy at the cutout centre.
        dark_variance: (B,) read noise + dark current variance per pixel, electrons^2.
        wcs: astropy WCS of band 0's cutout (0-based pixels).
        origin: (B, 2) int frame pixel (row, col) of each band's cutout pixel [0, 0].
        band_offset_variation: (B,) largest change of the band offset across the cutout, relative to
            its value at the centre, pixels (Euclidean).
        nelec_per_nmgy_map: (B, H, W) float32 electrons per nanomaggy per pixel, or None.
        meta: ``frames`` (per band: band, source, run, camcol, field, calibration_source),
            ``run``/``camcol``/``field`` (when all bands share them), ``psf_source`` and
            ``psf_clipped_fraction`` per band, ``band_offset_at_center`` ((B, 2) full WCS offset
            before rounding, pixels), ``center_radec`` (deg), ``pixel_scale`` (arcsec/pixel),
            ``sky_interp``, ``band_wcs`` (each band's cutout WCS).
    """

    image: np.ndarray
    sky: np.ndarray
    psf: np.ndarray
    band_offsets: np.ndarray
    bands: tuple[str, ...]
    gain: np.ndarray
    nelec_per_nmgy: np.ndarray
    dark_variance: np.ndarray
    wcs: Any
    origin: np.ndarray
    band_offset_variation: np.ndarray | None = None
    nelec_per_nmgy_map: np.ndarray | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("image", np.asarray(self.image, np.float32))
        set_("sky", np.asarray(self.sky, np.float32))
        set_("psf", np.asarray(self.psf, float))
        set_("bands", tuple(self.bands))
        for k in ("band_offsets", "gain", "nelec_per_nmgy", "dark_variance"):
            set_(k, np.asarray(getattr(self, k), float))
        set_("origin", np.asarray(self.origin, int))
        nb = len(self.bands)
        var = self.band_offset_variation
        set_("band_offset_variation", np.zeros(nb) if var is None else np.asarray(var, float))
        if self.nelec_per_nmgy_map is not None:
            set_("nelec_per_nmgy_map", np.asarray(self.nelec_per_nmgy_map, np.float32))
        set_("meta", dict(self.meta))
        problems = []
        if self.image.ndim != 3 or self.image.shape[0] != nb:
            problems.append(f"image must be (B={nb}, H, W), got shape {self.image.shape}")
        for k in ("sky", "nelec_per_nmgy_map"):
            a = getattr(self, k)
            if a is not None and a.shape != self.image.shape:
                problems.append(f"{k} shape {a.shape} != image shape {self.image.shape}")
        s = self.psf.shape
        if self.psf.ndim != 3 or s[0] != nb or s[1] != s[2] or s[1] % 2 == 0:
            problems.append(f"psf must be (B={nb}, S, S) with odd S, got shape {s}")
        elif not np.allclose(self.psf.sum(axis=(1, 2)), 1.0, atol=1e-6):
            problems.append(f"psf stamps must sum to 1, got {self.psf.sum(axis=(1, 2)).tolist()}")
        shapes = {"band_offsets": (nb, 2), "origin": (nb, 2), "gain": (nb,), "nelec_per_nmgy": (nb,),
                  "dark_variance": (nb,), "band_offset_variation": (nb,)}
        for k, shape in shapes.items():
            if getattr(self, k).shape != shape:
                problems.append(f"{k} must have shape {shape}, got {getattr(self, k).shape}")
        if len(set(self.bands)) != nb:
            problems.append(f"bands must be distinct, got {self.bands}")
        if not problems and not np.all(np.isfinite(self.image)):
            problems.append(f"image has {int((~np.isfinite(self.image)).sum())} non-finite pixel(s)")
        if problems:
            raise FieldError("invalid Field: " + "; ".join(problems))

    @property
    def shape(self) -> tuple[int, int]:
        """Cutout size (H, W), pixels."""
        return tuple(self.image.shape[1:])

    @property
    def n_bands(self) -> int:
        """Number of bands B."""
        return len(self.bands)

    @property
    def variance(self) -> np.ndarray:
        """(B, H, W) float32 Poisson + read/dark variance, ``max(image, 0) + dark_variance``, electrons^2."""
        return (np.maximum(self.image, 0) + self.dark_variance[:, None, None]).astype(np.float32)

    def band_index(self, band: str | int) -> int:
        """Index of ``band`` (a name such as ``"i"`` or an index)."""
        if isinstance(band, str):
            if band not in self.bands:
                raise KeyError(f"band {band!r} is not in this field (bands {self.bands})")
            return self.bands.index(band)
        return range(self.n_bands)[band]


# -- frame headers ------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Frame:
    path: Path
    band: str
    run: int
    camcol: int
    field: int
    shape: tuple[int, int]                 # (rows, cols) of the full frame
    wcs: Any
    obs: Observation | None = None         # set when the frame had to be read to get its header


def _peek_header(path: Path) -> fits.Header | None:
    """The primary header of a (possibly gzip/bzip2-compressed) FITS file, streamed; None if unreadable."""
    try:
        with open(path, "rb") as f:
            kind = _compression(f.read(4))
        opener = {None: open, "gzip": gzip.open, "bzip2": bz2.open}.get(kind)
        if opener is None:
            return None
        with opener(path, "rb") as f:
            return fits.Header.fromfile(f)
    except Exception:  # anything wrong: read_sdss_frame reads the file and explains
        return None


def frame_bands(frames: Sequence[str | Path]) -> list[str]:
    """The band of each SDSS frame file, from its header (FILTER, else the file name)."""
    return [_frame(p, "linear", None).band for p in frames]


def _frame(path, sky_interp: str, psfield) -> _Frame:
    """Band, ids, frame shape and WCS of a frame file, from its header alone when it can be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SDSS frame file not found: {path}")
    hdr = _peek_header(path)
    obs = None
    if hdr is None or "NAXIS1" not in hdr or "NAXIS2" not in hdr:
        obs = read_sdss_frame(path, sky_interp=sky_interp, psfield=psfield)  # raises a clear error if bad
        hdr = obs.meta["header"]
    m = _FRAME_RE.search(path.name)
    band = str(hdr.get("FILTER", m.group(1) if m else "")).strip()
    if band not in tuple(BANDS):
        raise FileFormatError(f"{path}: the band of this SDSS frame (header FILTER, else the file name) is "
                              f"{band!r}, not one of {list(BANDS)}")
    # the field number comes from the file name: the header's FRAME is the CCD's own frame sequence
    # number, which differs from the field in all bands but r (run 2583 camcol 2 field 136: i 138, g 144)
    ids = []
    for key, g in (("RUN", 2), ("CAMCOL", 3), ("FRAME", 4)):
        v = m.group(g) if m and (key == "FRAME" or key not in hdr) else hdr.get(key, -1)
        try:
            ids.append(int(v))
        except (TypeError, ValueError):
            raise FileFormatError(f"{path}: header keyword {key} = {v!r} is not an integer") from None
    shape = obs.shape if obs is not None else (int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))
    wcs = obs.wcs if obs is not None else read_wcs(hdr, source=path)
    if wcs is None:
        raise FileFormatError(f"{path}: the frame header holds no celestial WCS; bands cannot be matched")
    return _Frame(path, band, *ids, shape, wcs, obs)


def _select_bands(frames: list[_Frame], bands) -> list[_Frame]:
    """The frames in the order of ``bands`` (default: as given); errors for duplicate/missing bands."""
    seen: dict[str, _Frame] = {}
    for f in frames:
        if f.band in seen:
            raise FieldError(f"band {f.band!r} given twice: {seen[f.band].path} and {f.path} (give one frame "
                             "per band)")
        seen[f.band] = f
    if bands is None:
        return frames
    bands = (bands,) if isinstance(bands, str) else tuple(bands)
    if not bands:
        raise FieldError("bands is empty: name at least one band")
    dup = sorted({b for b in bands if bands.count(b) > 1})
    if dup:
        raise FieldError(f"bands {bands} name band(s) {dup} more than once")
    missing = [b for b in bands if b not in seen]
    if missing:
        raise FieldError(f"no frame for band(s) {missing}: the frames given hold bands {list(seen)}")
    return [seen[b] for b in bands]


# -- boxes ---------------------------------------------------------------------------------------------
def _size(size, min_size: int) -> tuple[int, int]:
    if size is None:
        raise FieldError("size is required: an int or (H, W) in pixels")
    h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
    if any(int(v) != v for v in (h, w)):
        raise FieldError(f"size must be whole pixels, got {size!r}")
    h, w = int(h), int(w)
    if min(h, w) < min_size:
        raise FieldError(f"the cutout of {h} x {w} pixels is smaller than min_size = {min_size} pixels")
    return h, w


def _check_inside(box0: tuple[int, int], hw: tuple[int, int], f: _Frame, what: str) -> None:
    (y0, x0), (h, w), (ny, nx) = box0, hw, f.shape
    sides = ((-y0, "top (row < 0)"), (y0 + h - ny, f"bottom (row >= {ny})"), (-x0, "left (col < 0)"),
             (x0 + w - nx, f"right (col >= {nx})"))
    over = [(n, side) for n, side in sides if n > 0]
    if over:
        by = ", ".join(f"{n} px past the {side}" for n, side in over)
        raise FieldError(f"the {what} box rows {y0}:{y0 + h}, cols {x0}:{x0 + w} is not inside the {ny} x "
                         f"{nx} frame {f.path.name}: it extends {by}")


def _map(src_wcs, dst_wcs, rows, cols) -> tuple[np.ndarray, np.ndarray]:
    """Frame pixels (rows, cols) of ``src_wcs`` mapped through the sky to ``dst_wcs``'s frame pixels."""
    x, y = dst_wcs.world_to_pixel(src_wcs.pixel_to_world(np.asarray(cols, float), np.asarray(rows, float)))
    return np.asarray(y, float), np.asarray(x, float)


def _band_boxes(frames: list[_Frame], origin0, hw) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origins (B, 2) int, sub-pixel offsets (B, 2), full offsets at the centre (B, 2), variation (B,)."""
    (h, w), ref = hw, frames[0]
    c0 = np.array([origin0[0] + (h - 1) / 2, origin0[1] + (w - 1) / 2])
    gr, gc = np.meshgrid(origin0[0] + np.linspace(0, h - 1, 5), origin0[1] + np.linspace(0, w - 1, 5),
                         indexing="ij")
    origins, offsets, full, var = [np.asarray(origin0, int)], [np.zeros(2)], [np.zeros(2)], [0.0]
    for f in frames[1:]:
        y, x = _map(ref.wcs, f.wcs, c0[0], c0[1])
        d = np.array([float(y), float(x)]) - c0
        shift = np.floor(d + 0.5).astype(int)
        yy, xx = _map(ref.wcs, f.wcs, gr, gc)
        dv = np.hypot(yy - gr - d[0], xx - gc - d[1])
        origins.append(np.asarray(origin0, int) + shift)
        offsets.append(d - shift)
        full.append(d)
        var.append(float(dv.max()))
        _check_inside(tuple(origins[-1]), hw, f, f"WCS-matched {f.band}-band")
    return np.stack(origins), np.stack(offsets), np.stack(full), np.array(var)


# -- PSFs ------------------------------------------------------------------------------------------------
def _resize(a: np.ndarray, s: int | None) -> np.ndarray:
    """Centre crop or zero-pad an odd square stamp to side ``s`` (unchanged when ``s`` is None)."""
    n = a.shape[0]
    if s is None or s == n:
        return a
    if s < n:
        k = (n - s) // 2
        return a[k:k + s, k:k + s]
    k = (s - n) // 2
    return np.pad(a, k)


def _checked_psf(arr, band: str, source: str, size: int | None) -> tuple[np.ndarray, float]:
    """A given PSF image checked (2-D, square, odd, finite, sum 1 within 5%, centred), clipped, resized,
    normalised; and the flux fraction clipped (negative pixels)."""
    a, problems = _psf_problems(arr, "clip")
    if not problems:
        n, total = a.shape[0], float(a.sum())
        if n % 2 == 0:
            problems.append(f"PSF side {n} is even; it must be odd with the centre on the middle pixel")
        if abs(total - 1) > PSF_SUM_TOLERANCE:
            problems.append(f"PSF sums to {total:.6g}, not 1 within {PSF_SUM_TOLERANCE:.0%} (is it on "
                            "another flux scale? divide it by its sum)")
        pos = np.maximum(a, 0)
        yy, xx = np.indices(a.shape)
        cy, cx = (pos * yy).sum() / pos.sum(), (pos * xx).sum() / pos.sum()
        if max(abs(cy - (n - 1) / 2), abs(cx - (n - 1) / 2)) > 1:
            problems.append(f"PSF is not centred: its centroid is at ({cy:.2f}, {cx:.2f}), more than 1 pixel "
                            f"from the middle pixel ({(n - 1) / 2:g}, {(n - 1) / 2:g})")
    if problems:
        raise PSFError(f"the {band}-band PSF ({source}): " + "; ".join(problems))
    clipped = float(-a[a < 0].sum() / a.sum())
    a = _resize(np.maximum(a, 0.0), size)
    return a / a.sum(), clipped


def _psf_file(path: Path, band: str, size) -> tuple[np.ndarray, float]:
    from starmodels.io import read_image

    if not path.is_file():
        raise FieldError(f"no {band}-band PSF image: {path} does not exist")
    return _checked_psf(read_image(path, wcs=False, mask_invalid=False).data, band, str(path), size)


def _find_psfield(f: _Frame, psfield) -> Path | None:
    if psfield is not None:
        return Path(psfield)
    name = sdss_filename("psField", f.run, f.camcol, f.field)
    for p in (f.path.parent / (name + "s"), f.path.parent / name):
        if p.is_file():
            return p
    return None


def _psfs(psf, frames: list[_Frame], origins, hw, psf_size, psfield) -> tuple[np.ndarray, list, list]:
    """(B, S, S) PSFs, their sources and clipped fractions, per band."""
    h, w = hw
    out, sources, clipped = [], [], []
    if isinstance(psf, str) and psf not in ("psfield", "images"):
        raise FieldError(f"psf must be 'psfield', 'images', or PSF arrays/files per band, got {psf!r}")
    given = None
    if not isinstance(psf, str):
        bands = [f.band for f in frames]
        if isinstance(psf, Mapping):
            missing = [b for b in bands if b not in psf]
            if missing:
                raise FieldError(f"psf gives no PSF for band(s) {missing} (it has {list(psf)})")
            given = [psf[b] for b in bands]
        else:
            given = [psf] if isinstance(psf, np.ndarray) and psf.ndim == 2 else list(psf)
            if len(given) != len(frames):
                raise FieldError(f"psf gives {len(given)} PSF(s) for {len(frames)} band(s) {bands}; give one "
                                 "per band (in band order) or a dict {band: PSF}")
    for i, f in enumerate(frames):
        rc, cc = origins[i][0] + (h - 1) / 2, origins[i][1] + (w - 1) / 2
        if given is not None:
            g = given[i]
            a, c = (_psf_file(Path(g), f.band, psf_size) if isinstance(g, str | Path)
                    else _checked_psf(g, f.band, "array", psf_size))
            src = str(g) if isinstance(g, str | Path) else "array"
        elif psf == "images":
            p = f.path.parent / f"sdss-{f.run:06d}-{f.camcol}-{f.field:04d}-psf-{f.band}.fits"
            a, c = _psf_file(p, f.band, psf_size)
            src = str(p)
        else:
            p = _find_psfield(f, psfield)
            if p is None or not p.is_file():
                looked = p or sdss_filename("psField", f.run, f.camcol, f.field) + "[s] next to it"
                raise FieldError(f"no psField for the {f.band}-band PSF of {f.path.name} (looked for "
                                 f"{looked}); pass psfield=, psf='images' or PSF arrays")
            k = KLPsf.from_psfield(p, f.band).at(rc, cc, size=psf_size)
            a, c = np.asarray(k), k.meta["clipped_fraction"]
            src = f"{p} (KL PSF at frame row {rc:g}, col {cc:g})"
        out.append(a)
        sources.append(src)
        clipped.append(c)
    sizes = sorted({a.shape[0] for a in out})
    if len(sizes) > 1:
        raise FieldError(f"the bands' PSFs differ in size {sizes}; pass psf_size= to bring them to one size")
    return np.stack(out), sources, clipped


# -- the loader ---------------------------------------------------------------------------------------------
def load_sdss_field(
    frames: Sequence[str | Path] | str | Path,
    *,
    psfield: str | Path | None = None,
    center: tuple[float, float] | None = None,
    ra: float | None = None,
    dec: float | None = None,
    size: int | tuple[int, int] | None = None,
    origin: tuple[int, int] | None = None,
    psf: str | Sequence | Mapping | np.ndarray = "psfield",
    psf_size: int | None = 25,
    bands: Sequence[str] | None = None,
    min_size: int = 8,
    sky_interp: str = "linear",
) -> Field:
    """Cut SDSS frames (one per band) at the same patch of sky: a :class:`Field` in electrons.

    Args:
        frames: ``frame-*.fits[.bz2]`` paths, one per band; the band is read from each header
            (FILTER, else the file name).
        psfield: psField file for the PSF and the gain (default: the one next to each frame).
        center: band 0's cutout centre as frame pixel (row, col); or give ``ra``/``dec`` (deg, ICRS);
            or ``origin``: band 0's frame pixel (row0, col0) of the cutout's [0, 0]. Exactly one.
        size: cutout size, ``n`` or ``(H, W)`` pixels (the same in every band).
        psf: ``"psfield"`` (the KL PSF at each band's cutout centre), ``"images"`` (the files
            ``sdss-{run}-{camcol}-{field}-psf-{band}.fits`` next to the frames), or per band PSF
            arrays / image paths (a list in band order, a (B, S, S) array or a dict by band); a given
            image must be odd, square, centred and sum to 1 within 5%.
        psf_size: odd PSF side, pixels (stamps are centre-cropped or zero-padded to it; None: native).
        bands: band names in the order wanted (band 0 first), chosen among the frames; default the
            frames' order.
        min_size: smallest cutout side accepted, pixels.
        sky_interp: ``"linear"`` or ``"nearest"`` sky-grid interpolation (see
            :func:`starmodels.io.sdss_sky`; BLISS/StarNet and the M2 truth file use ``"nearest"``).

    Raises:
        FieldError: a box outside a frame (by how many pixels), a cutout below ``min_size``, a band
            given twice or missing, NaN pixels inside the box, bad arguments.
        PSFError: a given PSF that is not a usable stamp or does not sum to 1 within 5%.
        FileNotFoundError, FileFormatError: missing or unreadable files (from :mod:`starmodels.io`).
    """
    paths = [frames] if isinstance(frames, str | Path) else list(frames)
    if not paths:
        raise FieldError("frames is empty: give one frame file per band")
    hw = _size(size, min_size)
    if psf_size is not None and (int(psf_size) != psf_size or psf_size < 1 or psf_size % 2 == 0):
        raise FieldError(f"psf_size must be an odd number of pixels >= 1, got {psf_size!r}")
    given = [n for n, v in (("center", center), ("ra/dec", ra if ra is not None else dec), ("origin", origin))
             if v is not None]
    if len(given) != 1 or (given == ["ra/dec"] and (ra is None or dec is None)):
        raise FieldError(f"give exactly one of center=(row, col), ra= and dec=, or origin=(row0, col0); got "
                         f"{given or 'none'}")
    infos = _select_bands([_frame(p, sky_interp, psfield) for p in paths], bands)
    ref = infos[0]
    if origin is not None:
        if any(int(v) != v for v in origin):
            raise FieldError(f"origin must be whole frame pixels, got {origin!r}")
        origin0 = (int(origin[0]), int(origin[1]))
    else:
        if center is None:
            x, y = ref.wcs.world_to_pixel(SkyCoord(float(ra), float(dec), unit="deg"))
            center = (float(y), float(x))
        yc, xc = float(center[0]), float(center[1])
        origin0 = (math.floor(yc - (hw[0] - 1) / 2 + 0.5), math.floor(xc - (hw[1] - 1) / 2 + 0.5))
    _check_inside(origin0, hw, ref, f"{ref.band}-band (band 0)")
    origins, offsets, full, variation = _band_boxes(infos, origin0, hw)
    psfs, psf_sources, clipped = _psfs(psf, infos, origins, hw, psf_size, psfield)

    cuts = []
    for f, (y0, x0) in zip(infos, origins, strict=True):
        obs = f.obs or read_sdss_frame(f.path, sky_interp=sky_interp, psfield=_find_psfield(f, psfield))
        cut = obs.cutout(rows=(y0, y0 + hw[0]), cols=(x0, x0 + hw[1]))
        bad = ~np.isfinite(cut.data)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise FieldError(f"the {f.band}-band cutout rows {y0}:{y0 + hw[0]}, cols {x0}:{x0 + hw[1]} of "
                             f"{f.path.name} holds {int(bad.sum())} NaN/inf pixel(s), the first at frame "
                             f"pixel (row {y0 + r}, col {x0 + c}); move or shrink the box")
        cuts.append(cut)

    h, w = hw
    nmap = np.stack([np.asarray(c.meta["nelec_per_nmgy"], np.float32) for c in cuts])
    centre = nmap[:, (h - 1) // 2:h // 2 + 1, (w - 1) // 2:w // 2 + 1].mean(axis=(1, 2), dtype=float)
    ra_c, dec_c = (float(v) for v in cuts[0].wcs.all_pix2world((w - 1) / 2, (h - 1) / 2, 0))
    ids = {k: [getattr(f, k) for f in infos] for k in ("run", "camcol", "field")}
    meta = {
        "frames": [{"band": f.band, "source": str(f.path), "run": f.run, "camcol": f.camcol, "field": f.field,
                    "calibration_source": c.meta.get("calibration_source")}
                   for f, c in zip(infos, cuts, strict=True)],
        **{k: v[0] for k, v in ids.items() if len(set(v)) == 1},
        "psf_source": psf_sources, "psf_clipped_fraction": clipped, "band_offset_at_center": full,
        "center_radec": (ra_c, dec_c), "pixel_scale": cuts[0].pixel_scale, "sky_interp": sky_interp,
        "band_wcs": [c.wcs for c in cuts],
    }
    return Field(
        image=np.stack([c.data for c in cuts]), sky=np.stack([np.broadcast_to(c.sky, hw) for c in cuts]),
        psf=psfs, band_offsets=offsets, bands=tuple(f.band for f in infos),
        gain=np.array([c.gain for c in cuts]), nelec_per_nmgy=centre,
        dark_variance=np.array([c.meta["dark_variance"] * c.gain**2 for c in cuts]),
        wcs=cuts[0].wcs, origin=origins, band_offset_variation=variation, nelec_per_nmgy_map=nmap, meta=meta,
    )


# -- the M2 benchmark -------------------------------------------------------------------------------------
def m2_data_dir(data_dir: str | Path | None = None) -> Path:
    """The shared SDSS data folder: ``data_dir``, else env ``STARMODELS_SDSS_DATA``, else the first of
    ``../shared/data/sdss`` next to the repository and ``/work/shared/data/sdss`` that exists;
    FileNotFoundError naming the folder(s) if missing."""
    return find_data_dir("sdss", DATA_ENV, data_dir, "SDSS", "2583/2/136/frame-*.fits.bz2")


def m2_field(data_dir: str | Path | None = None, bands: Sequence[str] = ("r", "i"), **kwargs) -> Field:
    """The M2 benchmark cutout: r frame rows 627:733, cols 307:413 (106 x 106), other bands WCS-matched.

    Band 0 must be ``r`` (the box is defined on the r frame); the other bands are cut at the box of
    their frame nearest to the same sky, the sub-pixel rest in ``band_offsets``. Note the truth file's
    i image is *not* this i cutout: it is the i frame resampled (bilinear) onto the r box.

    Args:
        data_dir: folder holding ``2583/2/136/`` (see :func:`m2_data_dir`).
        bands: bands to load, ``r`` first.
        **kwargs: passed to :func:`load_sdss_field` (``psf``, ``psf_size``, ``sky_interp``, ``psfield``).
    """
    bands = (bands,) if isinstance(bands, str) else tuple(bands)
    if not bands or bands[0] != "r":
        raise FieldError(f"the M2 box is defined on the r frame: bands must start with 'r', got {bands}")
    bad = sorted(set(kwargs) & {"center", "ra", "dec", "origin", "size", "bands"})
    if bad:
        raise TypeError(f"m2_field fixes the box and bands; do not pass {bad}")
    folder = m2_data_dir(data_dir) / str(M2_RUN) / str(M2_CAMCOL) / str(M2_FIELD)
    frames = [folder / sdss_filename("frame", M2_RUN, M2_CAMCOL, M2_FIELD, b) for b in bands]
    for p in frames:
        if not p.is_file():
            raise FileNotFoundError(f"M2 frame not found: {p}")
    return load_sdss_field(frames, origin=M2_ORIGIN, size=M2_SIZE, bands=bands, **kwargs)
