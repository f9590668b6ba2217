"""Reading channels from FITS files: :func:`read_channel` (one image with its WCS, ERR/VAR, DQ, mask and
PSF) and :func:`read_channels` (a list of channel descriptions, e.g. the ``[[channels]]`` tables of a TOML
file, with every problem of every channel reported in one :class:`~starmodels.sky.channel.ChannelError`,
header-level problems before any image data are read). :func:`hsc_hst_data_dir` finds the shared
HSC + HST test cutouts (env ``STARMODELS_HSC_HST_DATA``). Conventions: :mod:`starmodels.sky.channel`.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.wcs import WCS

from starmodels.io.fits import read_wcs
from starmodels.io.fits_open import (
    ExtensionNotFoundError,
    FileFormatError,
    _expected_shape,
    _hdu_label,
    describe_hdus,
    get_hdu,
    hdu_data,
    open_fits,
)
from starmodels.io.shared_data import find_data_dir
from starmodels.sky.channel import ChannelData, ChannelError
from starmodels.sky.checks import is_int
from starmodels.sky.masks import Region, combine, mask_from_dq, mask_from_nans, region_mask
from starmodels.sky.psf_images import _centroid, _peak, normalized_psf, recenter_psf

log = logging.getLogger(__name__)

SPEC_KEYS = ("path", "name", "hdu", "plane", "err", "var", "dq", "dq_bad_bits", "psf", "psf_plane",
             "psf_recenter", "band", "unit", "mask")
"""The keys a channel description (a dict given to :func:`read_channels`) may hold."""

PSF_RECENTER = ("peak", "subpixel", "centroid", "none")
"""Ways :func:`read_channel` centres a PSF image (see its ``psf_recenter`` argument)."""

ALL_BITS = (1 << 64) - 1
"""DQ bitmask used when no ``dq_bad_bits`` is given: any set bit makes the pixel bad."""

_FITS_SUFFIX = re.compile(r"\.(fits|fit|fts)(\.gz|\.bz2|\.fz)?$|\.fz$", re.IGNORECASE)
_FILE_REF = re.compile(r"^(?P<file>.+?)\[(?P<key>[^\[\]]+)\]$")
HSC_HST_DATA_ENV = "STARMODELS_HSC_HST_DATA"
_AUTO_NAMES = {"err": ("ERR",), "var": ("VAR", "VARIANCE"), "dq": ("DQ",)}
_BAND_KEYWORDS = ("FILTER", "BAND")


@dataclass
class _Ref:
    """An array to read: ``key`` (None = first image HDU with data) of file ``path``, optionally a plane."""

    role: str  # "image", "ERR", "VAR", "DQ", "PSF"
    path: Path
    key: Any = None
    plane: int | None = None
    label: str = ""  # "HDU 1 ('SCI')" once found
    index: int | None = None
    how: str = "given"  # "given", "auto-detected", ...


def _looks_like_file(s: str) -> bool:
    return bool(_FITS_SUFFIX.search(s)) or "/" in s or os.sep in s


def _parse_key(text: str):
    """``"2"`` -> 2, ``"SCI"`` -> ``"SCI"``, ``"SCI,2"`` -> ``("SCI", 2)`` (the ``file[key]`` syntax)."""
    text = text.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    if "," in text:
        name, ver = (t.strip() for t in text.split(",", 1))
        if re.fullmatch(r"\d+", ver):
            return (name, int(ver))
    return text


def _hdu_key(value, what: str):
    """A valid HDU key (int >= 0, EXTNAME, (EXTNAME, EXTVER)) or a ValueError naming ``what``."""
    if is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, tuple | list) and len(value) == 2 and isinstance(value[0], str) and is_int(value[1]):
        return (value[0], int(value[1]))
    raise ValueError(f"{what} must be an HDU index (>= 0), an EXTNAME or [EXTNAME, EXTVER], got {value!r}")


def _ref(role: str, value, science: Path, base: Path | None) -> _Ref | None:
    """Where ``value`` (an err=/var=/dq=/psf= argument) points: an HDU of the science file or another file.

    A ``Path``, or a string that ends in a FITS suffix (``.fits``, ``.fit``, ``.fts``, optionally
    ``.gz``/``.bz2``/``.fz``) or contains a folder separator, is a file (its first image HDU with data,
    or ``file.fits[KEY]`` for the HDU ``KEY``: an index, an EXTNAME or ``EXTNAME,EXTVER``); any other string,
    an int or an ``(EXTNAME, EXTVER)`` pair is an HDU of the science file.
    """
    if value is None or value is False:
        return None
    if isinstance(value, Path):
        return _Ref(role, _resolve(value, base))
    if isinstance(value, str):
        m = _FILE_REF.match(value.strip())
        if m and _looks_like_file(m.group("file")):
            return _Ref(role, _resolve(m.group("file"), base), _parse_key(m.group("key")))
        if _looks_like_file(value.strip()):
            return _Ref(role, _resolve(value.strip(), base))
    return _Ref(role, science, _hdu_key(value, f"{role.lower()}="))


def _resolve(path, base: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if base is None or p.is_absolute() else base / p


def _stem(path: Path) -> str:
    name = path.name
    m = _FITS_SUFFIX.search(name)
    return name[: m.start()] if m else path.stem


def _image_hdus(hdul) -> list[int]:
    """Indices of the image HDUs whose headers announce data with at least 2 axes (no data is read)."""
    out = []
    for i, h in enumerate(hdul):
        shape = _expected_shape(h) if getattr(h, "is_image", False) else None
        if shape is not None and len(shape) >= 2:
            out.append(i)
    return out


def _locate(hdul, ref: _Ref, plane, plane_arg: str) -> tuple[int, int]:
    """Find ``ref``'s HDU in ``hdul`` and check ``plane`` against its header; ``(H, W)``, or ValueError.

    Sets ``ref.index``, ``ref.label`` and ``ref.plane``.
    """
    if ref.key is None:
        found = _image_hdus(hdul)
        if not found:
            raise ValueError(f"{ref.path}: no image HDU with data; HDUs present: {describe_hdus(hdul)}")
        ref.index = found[0]
    else:
        h = get_hdu(hdul, ref.key, ref.path)  # ExtensionNotFoundError lists the HDUs
        ref.index = hdul.index(h)
    h = hdul[ref.index]
    ref.label = _hdu_label(hdul, ref.index)
    where = f"{ref.path} {ref.label}"
    shape = _expected_shape(h) if getattr(h, "is_image", False) else None
    if shape is None:
        kind = "has no data" if getattr(h, "is_image", False) else f"is a table ({type(h).__name__})"
        raise ValueError(f"{where} {kind}, not an image; HDUs present: {describe_hdus(hdul)}")
    if len(shape) == 2:
        if plane is not None:
            raise ValueError(f"{where} holds a 2-D image of shape {shape}; {plane_arg}={plane} applies to "
                             "cubes (N, H, W) only")
        ref.plane = None
        return shape
    if len(shape) != 3:
        raise ValueError(f"{where} holds a {len(shape)}-D array of shape {shape}; expected a 2-D image or a "
                         "3-D cube (N, H, W)")
    n = shape[0]
    if plane is None:
        if n != 1:
            raise ValueError(f"{where} holds a cube of {n} planes, shape {shape}: choose one with "
                             f"{plane_arg}= (0 to {n - 1})")
        plane = 0
    if not is_int(plane):
        raise ValueError(f"{plane_arg} must be an integer, got {plane!r}")
    if not 0 <= plane < n:
        raise ValueError(f"{where}: {plane_arg}={plane} is out of range: the cube {shape} holds {n} planes "
                         f"(0 to {n - 1})")
    ref.plane = int(plane)
    return shape[1:]


def _read(hdul, ref: _Ref) -> np.ndarray:
    """The (plane of the) array ``ref`` as stored (any dtype and byte order)."""
    if ref.plane is None:
        return np.asarray(hdu_data(hdul, ref.index, ref.path))
    h = hdul[ref.index]
    try:
        return np.array(h.section[ref.plane])  # reads that plane only
    except Exception:  # sections are not supported by every HDU type: read the cube
        return np.asarray(hdu_data(hdul, ref.index, ref.path))[ref.plane]


def _problem_text(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError | ExtensionNotFoundError | FileFormatError | ValueError):
        return str(e)
    return f"{type(e).__name__}: {e}"


# ----------------------------------------------------------------------------------------------------
# reading one channel: plan (headers only), then load (data)
# ----------------------------------------------------------------------------------------------------

@dataclass
class _Plan:
    name: str
    path: Path
    problems: list[str]
    image: _Ref | None = None
    shape: tuple[int, int] | None = None
    wcs: WCS | None = None
    unit: str = ""
    unit_source: str = ""
    band: str | None = None
    band_source: str = ""
    noise: _Ref | None = None  # ERR or VAR
    dq: _Ref | None = None
    dq_bits: int = ALL_BITS
    dq_bits_given: Any = None
    psf: _Ref | None = None
    psf_array: np.ndarray | None = None
    psf_recenter: str = "peak"
    user_mask: Any = None

    def add(self, text: str) -> None:
        self.problems.append(f"channel {self.name!r}: {text}")


def _check_args(plan: _Plan, a: dict) -> None:
    """Type checks of the arguments that need no file."""
    for k in ("plane", "psf_plane"):
        v = a.get(k)
        if v is not None and not (is_int(v) and v >= 0):
            plan.add(f"{k} must be a plane index (integer >= 0), got {v!r}")
            a[k] = None
    for k in ("band", "unit"):
        v = a.get(k)
        if v is not None and not isinstance(v, str):
            plan.add(f"{k} must be a string, got {v!r}")
            a[k] = None
    given = [k for k in ("err", "var") if a.get(k) not in (None, False)]
    if len(given) == 2:
        plan.add("give at most one of err= (standard deviations) and var= (variances), got both")
    method = a.get("psf_recenter", "peak")
    if method is None or method is False:
        method = "none"
    if method not in PSF_RECENTER:
        plan.add(f"psf_recenter must be one of {', '.join(PSF_RECENTER)}, got {method!r}")
        method = "peak"
    plan.psf_recenter = method
    bits = a.get("dq_bad_bits")
    if bits is not None:
        try:
            mask_from_dq(np.zeros(1, np.int64), bits)  # validates the bitmask or bit list
            plan.dq_bits = bits
            plan.dq_bits_given = bits
        except ValueError as e:
            plan.add(f"dq_bad_bits: {e}")


def _plan_channel(a: dict, base: Path | None) -> _Plan:
    """Check one channel's arguments and the headers of its files (no data read)."""
    raw_path = a.get("path")
    name = a.get("name")
    path = _resolve(raw_path, base) if isinstance(raw_path, str | Path) else Path(str(raw_path))
    if name is None:
        stem = _stem(path)
        suffix = a.get("band") if isinstance(a.get("band"), str) else a.get("plane")
        name = stem if suffix is None else f"{stem}_{suffix}"
    plan = _Plan(name=str(name), path=path, problems=[])
    if a.get("name") is not None and not isinstance(a["name"], str):
        plan.add(f"name must be a string, got {a.get('name')!r}")
    if not isinstance(raw_path, str | Path):
        plan.add(f"path must be the file name of a FITS image, got {raw_path!r}")
        return plan
    _check_args(plan, a)
    refs = {}
    for role in ("err", "var", "dq", "psf"):
        value = a.get(role)
        if role == "psf" and (isinstance(value, np.ndarray) or isinstance(value, list | tuple) and value
                              and all(isinstance(v, list | tuple | np.ndarray) for v in value)):
            plan.psf_array = np.asarray(value)
            continue
        try:
            refs[role] = _ref(role.upper(), value, path, base)
        except ValueError as e:
            plan.add(str(e))
    try:
        hdu = None if a.get("hdu") is None else _hdu_key(a["hdu"], "hdu=")
    except ValueError as e:
        plan.add(str(e))
        return plan
    plan.image = _Ref("image", path, hdu)
    try:
        with open_fits(path, what="image file") as hdul:
            _plan_image(plan, hdul, a)
            if plan.shape is not None:
                _plan_noise(plan, hdul, a, refs)
    except (OSError, ValueError, LookupError) as e:
        plan.add(_problem_text(e))
        return plan
    if refs.get("psf") is not None:
        _plan_psf(plan, refs["psf"], a.get("psf_plane"))
    elif a.get("psf_plane") is not None and plan.psf_array is None:
        plan.add(f"psf_plane={a['psf_plane']} given without psf=")
    if plan.psf_array is not None and plan.shape is not None:
        _check_psf_size(plan, plan.psf_array.shape[-2:], "the PSF array")
    _plan_mask(plan, a.get("mask"))
    return plan


def _plan_image(plan: _Plan, hdul, a: dict) -> None:
    try:
        plan.shape = _locate(hdul, plan.image, a.get("plane"), "plane")
    except (ValueError, LookupError) as e:
        plan.add(_problem_text(e))
        return
    header = hdul[plan.image.index].header
    where = f"{plan.path} {plan.image.label}"
    try:
        wcs = read_wcs(header, source=where)
    except ValueError as e:
        plan.add(str(e))
        wcs = None
    else:
        if wcs is None:
            plan.add(f"{where} has no celestial WCS in its header (CTYPE1/2 = "
                     f"{header.get('CTYPE1')!r}/{header.get('CTYPE2')!r}); a channel needs RA/Dec axes")
        elif wcs.naxis != 2:
            plan.add(f"{where}: the celestial WCS has {wcs.naxis} axes, expected 2")
            wcs = None
    plan.wcs = wcs
    primary = hdul[0].header
    if a.get("unit") is not None:
        plan.unit, plan.unit_source = a["unit"].strip(), "given"
    else:
        for src, h in ((plan.image.label, header), ("primary header", primary)):
            if "BUNIT" in h and str(h["BUNIT"]).strip():
                plan.unit, plan.unit_source = str(h["BUNIT"]).strip(), f"BUNIT of {src}"
                break
        else:
            plan.unit, plan.unit_source = "", "none (no BUNIT): arbitrary units"
    if a.get("band") is not None:
        plan.band, plan.band_source = a["band"], "given"
    else:
        for h, src in ((header, plan.image.label), (primary, "primary header")):
            found = next((k for k in _BAND_KEYWORDS if k in h and str(h[k]).strip()), None)
            if found:
                plan.band, plan.band_source = str(h[found]).strip(), f"{found} of {src}"
                break
        else:
            plan.band, plan.band_source = None, "unknown"


def _auto_ref(hdul, plan: _Plan, role: str) -> _Ref | None:
    """The ERR / VAR / DQ extension of the science file found by EXTNAME (same EXTVER), or None."""
    sci = hdul[plan.image.index]
    ver = sci.header.get("EXTVER")
    for i, h in enumerate(hdul):
        if i == plan.image.index or h.name.upper() not in _AUTO_NAMES[role]:
            continue
        if ver is not None and h.header.get("EXTVER", 1) != ver:
            continue
        return _Ref(role.upper(), plan.path, i, how="auto-detected by EXTNAME")
    return None


def _plan_noise(plan: _Plan, hdul, a: dict, refs: dict) -> None:
    """Find the ERR/VAR and DQ arrays (given or auto-detected) and check their shapes from headers."""
    noise = refs.get("err") or refs.get("var")
    if noise is None:
        for role in ("err", "var"):
            if a.get(role) is not False and (noise := _auto_ref(hdul, plan, role)) is not None:
                break
    dq = refs.get("dq")
    if dq is None and a.get("dq") is not False:
        dq = _auto_ref(hdul, plan, "dq")
    for ref in (noise, dq):
        if ref is None:
            continue
        try:
            if ref.path == plan.path:
                shape = _locate_like(hdul, ref, plan)
            else:
                with open_fits(ref.path, what=f"{ref.role} file") as other:
                    shape = _locate_like(other, ref, plan)
        except (OSError, ValueError, LookupError) as e:
            plan.add(f"{ref.role}: {_problem_text(e)}")
            continue
        if shape != plan.shape:
            plan.add(f"{ref.role} {ref.path} {ref.label} has shape {shape}, the image has {plan.shape}")
            continue
        if ref.role == "DQ":
            plan.dq = ref
        else:
            plan.noise = ref


def _locate_like(hdul, ref: _Ref, plan: _Plan) -> tuple[int, int]:
    """Locate a noise/DQ array: a 2-D image, or the image's plane of a cube (same plane index)."""
    if ref.key is None:
        found = _image_hdus(hdul)
        if not found:
            raise ValueError(f"{ref.path}: no image HDU with data; HDUs present: {describe_hdus(hdul)}")
        ref.key = found[0]
    h = get_hdu(hdul, ref.key, ref.path)
    shape = _expected_shape(h) if getattr(h, "is_image", False) else None
    plane = None
    if shape is not None and len(shape) == 3:
        if plan.image.plane is None:
            raise ValueError(f"{ref.path} HDU {ref.key!r} is a cube of shape {shape} but the image is 2-D")
        plane = plan.image.plane
    return _locate(hdul, ref, plane, "plane")


def _check_psf_size(plan: _Plan, shape, what: str) -> None:
    h, w = shape
    hi, wi = plan.shape
    if h > hi or w > wi:
        plan.add(f"{what} is {h}x{w}, larger than the image {hi}x{wi}; crop it to at most "
                 f"{hi - 1 + hi % 2}x{wi - 1 + wi % 2} around its centre")


def _plan_psf(plan: _Plan, ref: _Ref, psf_plane) -> None:
    try:
        with open_fits(ref.path, what="PSF file") as hdul:
            shape = _locate(hdul, ref, psf_plane, "psf_plane")
    except (OSError, ValueError, LookupError) as e:
        plan.add(f"PSF: {_problem_text(e)}")
        return
    plan.psf = ref
    if plan.shape is not None:
        _check_psf_size(plan, shape, f"PSF {ref.path} {ref.label}"
                        + (f" plane {ref.plane}" if ref.plane is not None else ""))


def _plan_mask(plan: _Plan, mask) -> None:
    if mask is None or plan.shape is None:
        return
    if isinstance(mask, Region) or (isinstance(mask, list | tuple) and mask
                                    and all(isinstance(r, Region) for r in mask)):
        plan.user_mask = mask
        return
    arr = np.asarray(mask)
    if arr.dtype != bool:
        plan.add(f"mask must be a boolean array (True = use the pixel) or region(s), got dtype {arr.dtype}")
    elif arr.shape != plan.shape:
        plan.add(f"mask has shape {arr.shape}, the image has {plan.shape}")
    else:
        plan.user_mask = arr


def _first(bad: np.ndarray) -> str:
    return str(tuple(int(i) for i in np.argwhere(bad)[0]))


def _load_channel(plan: _Plan) -> ChannelData | None:
    """Read the data of a planned channel and check it; None (problems added to the plan) if unusable."""
    n0 = len(plan.problems)
    arrays: dict[str, np.ndarray] = {}
    by_file: dict[Path, list[_Ref]] = {}
    for ref in (plan.image, plan.noise, plan.dq, plan.psf):
        if ref is not None:
            by_file.setdefault(ref.path, []).append(ref)
    for path, refs in by_file.items():
        try:
            with open_fits(path, what=f"{refs[0].role} file") as hdul:
                for ref in refs:
                    arrays[ref.role] = _read(hdul, ref)
        except (OSError, ValueError, LookupError) as e:
            plan.add(_problem_text(e))
            return None
    where = f"{plan.path} {plan.image.label}" + (f" plane {plan.image.plane}" if plan.image.plane is not None
                                                 else "")
    stored = arrays["image"]
    if stored.dtype.kind not in "biuf":
        plan.add(f"{where} holds {stored.dtype} values, not real numbers")
        return None
    image = np.asarray(stored, dtype=np.float64)
    meta: dict[str, Any] = {
        "files": {"image": str(plan.path)}, "hdus": {"image": plan.image.label}, "plane": plan.image.plane,
        "stored_dtype": str(stored.dtype), "byte_order_converted": not stored.dtype.isnative,
        "unit_source": plan.unit_source, "band_source": plan.band_source,
        "radesys": plan.wcs.wcs.radesys if plan.wcs is not None else None,
        "equinox": (None if plan.wcs is None or not np.isfinite(plan.wcs.wcs.equinox)
                    else float(plan.wcs.wcs.equinox)),
    }
    counts: dict[str, int] = {}
    masks = []
    finite_image = mask_from_nans(image)
    counts["nonfinite_image"] = int((~finite_image).sum())
    masks.append(finite_image)
    sigma = None
    noise_ref = plan.noise
    if noise_ref is not None:
        nwhere = f"{noise_ref.path} {noise_ref.label}"
        raw = arrays[noise_ref.role]
        if raw.dtype.kind not in "biuf":
            plan.add(f"{noise_ref.role} {nwhere} holds {raw.dtype} values, not real numbers")
        else:
            values = np.asarray(raw, dtype=np.float64)
            finite = mask_from_nans(values)
            counts[f"nonfinite_{noise_ref.role.lower()}"] = int((~finite & finite_image).sum())
            masks.append(finite)
            with np.errstate(invalid="ignore"):
                sigma = np.sqrt(values) if noise_ref.role == "VAR" else values
            meta["files"][noise_ref.role.lower()] = str(noise_ref.path)
            meta["hdus"][noise_ref.role.lower()] = noise_ref.label
            meta["sigma_from"] = (f"{'sqrt of ' if noise_ref.role == 'VAR' else ''}{noise_ref.role} "
                                  f"{noise_ref.label} of {noise_ref.path.name} ({noise_ref.how})")
    else:
        meta["sigma_from"] = "none (no ERR or VAR): estimate it with estimate_sigma"
    if plan.dq is not None:
        q = arrays["DQ"]
        dwhere = f"{plan.dq.path} {plan.dq.label}"
        if q.dtype.kind == "f":
            whole = np.isfinite(q) & (q == np.round(q))
            if not whole.all():
                plan.add(f"DQ {dwhere} holds floating-point values that are not whole numbers (first at "
                         f"{_first(~whole)}); it cannot hold bit flags")
                q = None
            else:
                q = q.astype(np.int64)
        if q is not None:
            try:
                dq_mask = mask_from_dq(q, plan.dq_bits)
            except ValueError as e:
                plan.add(f"DQ {dwhere}: {e}")
            else:
                counts["dq"] = int((~dq_mask).sum())
                masks.append(dq_mask)
                bits = plan.dq_bits_given
                meta["dq_bad_bits"] = "any set bit" if bits is None else bits
                meta["files"]["dq"] = str(plan.dq.path)
                meta["hdus"]["dq"] = f"{plan.dq.label} ({plan.dq.how})"
    if plan.user_mask is not None:
        if isinstance(plan.user_mask, np.ndarray):
            user = plan.user_mask.copy()
        else:
            try:
                user = region_mask(plan.shape, plan.user_mask, plan.wcs)
            except ValueError as e:
                plan.add(f"mask regions: {e}")
                user = None
        if user is not None:
            counts["user"] = int((~user).sum())
            masks.append(user)
    try:
        mask = combine(*masks)
    except ValueError:
        detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
        plan.add(f"{where}: the mask hides every pixel ({plan.shape[0]}x{plan.shape[1]}; pixels hidden by "
                 f"{detail})")
        mask = None
    if mask is not None and sigma is not None:
        label = f"{noise_ref.role} {noise_ref.path} {noise_ref.label}"
        values = np.asarray(arrays[noise_ref.role], dtype=np.float64)
        for what, bad in (("zero", (values == 0) & mask), ("negative", (values < 0) & mask)):
            if bad.any():
                plan.add(f"{label} has {int(bad.sum())} {what} value(s) in used pixels, first at (row, col) "
                         f"{_first(bad)}; mask them with a DQ flag or mask=, or fix the noise map")
    meta["mask_from"] = {**counts, "used": None if mask is None else int(mask.sum()), "total": image.size}
    psf = _load_psf(plan, arrays.get("PSF"), meta)
    if len(plan.problems) > n0:
        return None
    if any(counts.values()):
        log.info("channel %s: masked %s", plan.name, counts)
    return ChannelData(name=plan.name, image=image, wcs=plan.wcs, unit=plan.unit, sigma=sigma, mask=mask,
                       psf=psf, band=plan.band, meta=meta)


def _load_psf(plan: _Plan, stored, meta: dict) -> np.ndarray | None:
    """Check, re-centre (if asked) and normalise the PSF; None (with a problem) if it cannot be used."""
    if stored is None and plan.psf_array is None:
        return None
    if plan.psf is not None:
        label = f"PSF {plan.psf.path} {plan.psf.label}" + (
            f" plane {plan.psf.plane}" if plan.psf.plane is not None else "")
        meta["files"]["psf"] = str(plan.psf.path)
        meta["hdus"]["psf"] = plan.psf.label
        meta["psf_plane"] = plan.psf.plane
    else:
        label = "the PSF array"
        stored = plan.psf_array
    if stored.dtype.kind not in "biuf":
        plan.add(f"{label} holds {stored.dtype} values, not real numbers")
        return None
    raw = np.asarray(stored, dtype=np.float64)
    if raw.ndim == 3 and plan.psf is None:
        plan.add(f"{label} is a cube {raw.shape}: pass one 2-D PSF image")
        return None
    try:
        psf_image, info = _centre_psf(raw, plan.psf_recenter)
        psf = normalized_psf(psf_image, plan.shape)
    except ValueError as e:
        plan.add(f"{label}: {e}")
        return None
    meta.update(info)
    if info["psf_recentred"]:
        log.info("channel %s: PSF re-centred by %s pixels (rows, cols)", plan.name, info["psf_shift"])
    return psf


def _centre_psf(raw: np.ndarray, method: str) -> tuple[np.ndarray, dict]:
    """Move the PSF's centre to its middle pixel as ``method`` says; the image and what was done."""
    if raw.ndim != 2 or raw.size == 0:
        raise ValueError(f"PSF must be a 2-D image, got shape {raw.shape}")
    total = float(raw.sum())
    if not np.isfinite(raw).all() or not total > 0:
        normalized_psf(raw)  # raises naming the problem (NaN, inf, zero or negative sum)
    h, w = raw.shape
    peak = tuple(int(i) for i in np.unravel_index(np.argmax(raw), raw.shape))
    centre = ((h - 1) / 2, (w - 1) / 2)
    info = {"psf_shape_raw": (h, w), "psf_sum_raw": total, "psf_peak_raw": peak,
            "psf_peak_refined_raw": tuple(round(float(v), 3) for v in _peak(raw)),
            "psf_centroid_raw": tuple(round(float(v), 3) for v in _centroid(raw)),
            "psf_recenter": method, "psf_shift": (0.0, 0.0), "psf_recentred": False}
    off = peak != centre  # an even side never matches (centre between pixels)
    if method == "none" or (method == "peak" and not off):
        return raw, info
    if method == "peak":
        out, shift = recenter_psf(raw, method="peak", subpixel=False)
    else:
        out, shift = recenter_psf(raw, method="centroid" if method == "centroid" else "peak", subpixel=True)
    info.update(psf_shift=shift, psf_recentred=True, psf_flux_kept=float(out.sum() / total))
    return out, info


# ----------------------------------------------------------------------------------------------------
# public readers
# ----------------------------------------------------------------------------------------------------

def read_channel(path, *, name: str | None = None, hdu=None, plane: int | None = None, err=None, var=None,
                 dq=None, dq_bad_bits=None, psf=None, psf_plane: int | None = None, band: str | None = None,
                 unit: str | None = None, mask=None, psf_recenter: str = "peak") -> ChannelData:
    """Read one channel (image, WCS, noise, mask, PSF) from FITS files.

    Args:
        path: FITS file of the image (gzip/bzip2/tile-compressed files are read directly).
        name: channel label; default the file name without suffix, plus ``_band`` or ``_plane`` if given.
        hdu: the science HDU: index, EXTNAME or ``(EXTNAME, EXTVER)``; default the first image HDU with
            data (2-D or a cube).
        plane: for a cube ``(N, H, W)``: the plane to read (0-based; a cube of one plane needs none). Its
            WCS is the celestial part of the header's WCS (a header with ``NAXIS = 3`` and ``WCSAXES = 2``
            is handled).
        err: per-pixel noise standard deviations (image units): an HDU of the same file (index, EXTNAME,
            ``(EXTNAME, EXTVER)``), or another file (a ``Path``, a string ending in ``.fits``/``.fit``/
            ``.fts`` [``.gz``/``.bz2``/``.fz``] or containing a ``/``; ``"file.fits[KEY]"`` picks HDU
            ``KEY``). A cube of as many planes as the image gives the same plane. Default: the HDU named
            ``ERR`` of the image file (same EXTVER), if any; ``False``: do not look for one.
        var: variances (image units squared), as ``err``; ``sigma = sqrt(var)``. Default: the HDU named
            ``VAR`` or ``VARIANCE`` when there is no ERR. Give at most one of ``err`` and ``var``.
        dq: integer data-quality flags, as ``err``; default the HDU named ``DQ``; ``False``: none. A mask
            file in which non-zero means bad can be given here.
        dq_bad_bits: the DQ flags that make a pixel unusable: an int bitmask or a list of bit numbers
            (see :func:`starmodels.sky.masks.mask_from_dq`); default any set bit.
        psf: PSF image: a FITS file (as ``err``'s other-file forms, ``"psf.fits[1]"`` included) or a 2-D
            array. It must be on the image's pixel grid. Checked with
            :func:`~starmodels.sky.psf_images.normalized_psf` (finite, positive sum, odd sides, not larger
            than the image) and divided by its sum.
        psf_plane: plane of a PSF cube (e.g. one band of a multi-band PSF file).
        band: band or filter name; default the ``FILTER`` or ``BAND`` header keyword, else None.
        unit: flux unit of the image; default ``BUNIT`` (image header, then primary header), else ``""``
            (unknown; see :func:`check_units`).
        mask: extra pixels to exclude: a boolean ``(H, W)`` array (True = use) or region(s) of
            :mod:`starmodels.sky.masks` (``PixelCircle``, ``SkyCircle``, ...; pixels inside are masked).
        psf_recenter: ``"peak"`` (default): if the brightest pixel is not the middle pixel (or a side is
            even), shift the PSF by whole pixels so it is (no resampling; the centre is then within half
            a pixel); ``"subpixel"``: always shift the parabola-refined peak exactly onto the middle
            pixel (Fourier shift); ``"centroid"``: the same for the flux centroid (sensitive to lopsided
            wings); ``"none"``: leave it (even sides are then an error).

    Returns:
        A :class:`ChannelData`. The mask combines: DQ (bad bits), NaN/inf in the image and in ERR/VAR,
        and ``mask``. ``meta`` holds ``files`` and ``hdus`` (role -> file / ``"HDU i ('NAME')"``),
        ``plane``, ``sigma_from`` (how sigma was made), ``mask_from`` (pixels hidden by each source:
        ``nonfinite_image``, ``nonfinite_err``/``nonfinite_var``, ``dq``, ``user``; ``used``, ``total``),
        ``dq_bad_bits``, ``stored_dtype``, ``byte_order_converted``, ``unit_source``, ``band_source``,
        ``radesys`` / ``equinox`` of the WCS, and for a PSF ``psf_sum_raw``, ``psf_peak_raw`` (row, col),
        ``psf_peak_refined_raw``, ``psf_centroid_raw``, ``psf_recentred``, ``psf_shift`` (rows, cols,
        pixels; positive = towards larger indices) and ``psf_flux_kept`` (fraction of the flux left
        on the stamp after a shift).

    Raises:
        ChannelError (a ValueError): every problem found, each naming the file, the HDU and what is
            wrong: missing file, HDU not found, plane out of range, no celestial WCS, ERR/VAR with zero
            or negative values in used pixels, a mask hiding every pixel, a PSF larger than the image
            or not normalisable, shapes that differ, ...
    """
    spec = {"path": path, "name": name, "hdu": hdu, "plane": plane, "err": err, "var": var, "dq": dq,
            "dq_bad_bits": dq_bad_bits, "psf": psf, "psf_plane": psf_plane, "band": band, "unit": unit,
            "mask": mask, "psf_recenter": psf_recenter}
    return read_channels([spec])[0]


def read_channels(specs, *, base_dir=None) -> list[ChannelData]:
    """Read channels from a list of descriptions (dicts of :func:`read_channel`'s arguments).

    Each dict holds ``path`` and any of the keyword arguments of :func:`read_channel` (the keys in
    :data:`SPEC_KEYS`), e.g. the ``[[channels]]`` tables of a TOML file::

        [[channels]]
        name = "hsc_g"
        path = "Cut_HSC.fits"
        plane = 0
        psf = "PSF_HSC.fits"
        psf_plane = 0
        band = "g"

    Every channel is checked first from the file headers (files exist and are FITS, HDUs exist, planes
    are in range, WCS celestial, shapes match, PSF not larger than the image, keys known, names
    unique); if anything is wrong, one error lists every problem and no image data is read. Then the
    data are read and checked (noise-map values, masks, PSF sums), again reporting every problem.

    Args:
        specs: a list of dicts, or a dict with a ``"channels"`` list (a parsed TOML file).
        base_dir: folder that relative file names are relative to (e.g. the TOML file's folder);
            default the current folder.

    Returns:
        A list of :class:`ChannelData`, in the order of ``specs``.

    Raises:
        ChannelError (a ValueError): listing every problem of every channel, e.g. an unknown key (named,
            with the allowed keys), a missing file, a missing HDU, a plane out of range.
    """
    if isinstance(specs, Mapping) and "channels" in specs:
        specs = specs["channels"]
    if isinstance(specs, Mapping) or isinstance(specs, str | bytes) or not isinstance(specs, Iterable):
        raise ChannelError([f"specs must be a list of dicts (one per channel), got {type(specs).__name__}"])
    specs = list(specs)
    if not specs:
        raise ChannelError(["no channels given (an empty list)"])
    base = None if base_dir is None else Path(base_dir)
    problems: list[str] = []
    plans: list[_Plan] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping):
            problems.append(f"channel #{i}: a channel description must be a dict, got {type(spec).__name__}")
            continue
        label = f"channel #{i}" + (f" ({spec['name']!r})" if isinstance(spec.get("name"), str) else "")
        unknown = [k for k in spec if k not in SPEC_KEYS]
        for k in unknown:
            close = difflib.get_close_matches(str(k), SPEC_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{label}: unknown key {k!r}{hint}; allowed keys: {', '.join(SPEC_KEYS)}")
        if "path" not in spec:
            problems.append(f"{label}: no 'path' (the FITS file of the image)")
            continue
        args = {k: v for k, v in spec.items() if k in SPEC_KEYS}
        plan = _plan_channel(args, base)
        problems.extend(plan.problems)
        plans.append(plan)
    names = [p.name for p in plans]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"channel name {dup!r} is used by {names.count(dup)} channels; names must be unique "
                        "(give name=)")
    if problems:
        raise ChannelError(problems, note="(checked from the file headers; image data were not read)")
    channels = []
    for plan in plans:
        channel = _load_channel(plan)
        problems.extend(plan.problems)
        channels.append(channel)
    if problems:
        raise ChannelError(problems)
    return channels


def hsc_hst_data_dir(data_dir=None) -> Path:
    """The shared HSC + HST COSMOS cutouts (scarlet's test data): ``data_dir``, else env
    ``STARMODELS_HSC_HST_DATA``, else the first of ``../shared/data/hsc_hst`` next to the repository and
    ``/work/shared/data/hsc_hst`` that exists; FileNotFoundError naming the folder(s) if missing."""
    return find_data_dir("hsc_hst", HSC_HST_DATA_ENV, data_dir, "HSC/HST", "Cut_HSC.fits")
