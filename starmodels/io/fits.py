"""Read and write FITS images: :func:`read_image`, :func:`write_image`, :func:`write_observation`.

Extensions are chosen by name (EXTNAME, case-insensitive, optionally ``(name, ver)``) or 0-based
index. Pixel conventions are those of :mod:`starmodels.io.observation`.

Files are opened through :mod:`starmodels.io.fits_open`, which refuses incomplete or corrupt files.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from starmodels.atomic import atomic_path
from starmodels.io.fits_open import (  # noqa: F401 - re-exported: readers import them from here
    BLOCK,
    ExtensionNotFoundError,
    FileFormatError,
    _expected_shape,
    _hdu_label,
    _wcslib_message,
    describe_hdus,
    get_hdu,
    hdu_data,
    open_fits,
)
from starmodels.io.observation import Observation, ObservationError

log = logging.getLogger(__name__)

GAIN_KEYWORDS = ("GAIN", "CCDGAIN", "EGAIN", "ATODGAIN")
"""Header keywords searched (image HDU first, then the primary) for the gain in electrons/ADU."""

_WCS_NUMERIC = re.compile(r"^(CRVAL|CRPIX|CDELT|CROTA)\d+$|^(CD|PC)\d+_\d+$")


# -- WCS ----------------------------------------------------------------------------------------
def read_wcs(header: fits.Header | str | Path, hdu: int | str | tuple[str, int] | None = None, *,
             source: str | Path | None = None) -> WCS | None:
    """The celestial WCS of an image header (0-based pixels), or None when it has none.

    Args:
        header: a FITS header, or the path of a FITS file (opened with :func:`open_fits`).
        hdu: with a path, the HDU whose header is used; default the first 2-D image HDU, else the primary.
        source: where ``header`` comes from (a file name), for messages.

    Raises:
        FileFormatError: the file is unreadable (see :func:`open_fits`); or the header has a celestial
            WCS that cannot be used: a WCS keyword (CRVALi, CRPIXi, CDELTi, CDi_j, PCi_j) that is not a
            number, a WCS that astropy/wcslib reject (unknown projection, unmatched axes, singular
            matrix, ...), or a zero or non-finite pixel area.
    """
    if isinstance(header, str | Path):
        source = source or header
        with open_fits(header) as hdul:
            if hdu is None:
                image = [i for i, h in enumerate(hdul) if _is_2d_image(h)]
                hdu = image[0] if image else 0
            header = get_hdu(hdul, hdu, source).header.copy()
    where = f"{source}: " if source is not None else ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            w = WCS(header)
        except Exception as e:  # wcslib: SingularMatrixError, InconsistentAxisTypesError, ...
            raise FileFormatError(f"{where}invalid WCS in the header: {_wcslib_message(e)} (fix the header, "
                                  "or pass wcs=False to read_image to read the image without it)") from e
    if not w.has_celestial:
        return None
    bad = [f"{k} = {header[k]!r}" for k in header if _WCS_NUMERIC.match(k)
           and (isinstance(header[k], bool) or not isinstance(header[k], int | float))]
    if bad:
        raise FileFormatError(f"{where}invalid WCS in the header: {', '.join(bad)} is not a number (astropy "
                              "would silently use 0 or 1 instead); fix the header, or pass wcs=False to "
                              "read_image")
    w = w.celestial if w.naxis != 2 else w
    from astropy.wcs.utils import proj_plane_pixel_area

    try:
        area = float(proj_plane_pixel_area(w))
    except Exception as e:
        raise FileFormatError(f"{where}invalid WCS in the header: {_wcslib_message(e)}") from e
    if not (math.isfinite(area) and area > 0):
        raise FileFormatError(f"{where}invalid WCS in the header: the pixel area is {area:g} deg^2 (a zero "
                              "CDELTi or a singular CD/PC matrix); fix the header, or pass wcs=False to "
                              "read_image")
    return w


# -- images -------------------------------------------------------------------------------------
def _is_2d_image(h) -> bool:
    """True for an image HDU whose header announces a non-empty 2-D array (no data is read)."""
    shape = _expected_shape(h) if getattr(h, "is_image", False) else None
    return shape is not None and len(shape) == 2


def _first_image_hdu(hdul, path) -> int:
    for i, h in enumerate(hdul):
        if _is_2d_image(h):
            return i
    raise ExtensionNotFoundError(f"{path}: no 2-D image HDU; extensions present: {describe_hdus(hdul)}")


def _header_gain(path, *headers) -> float | None:
    """The first positive gain among :data:`GAIN_KEYWORDS` (numbers or numeric strings) in ``headers``.

    A keyword present with an unusable value (text, zero, negative, non-finite) is skipped with a
    warning naming the file, so a gain that is silently missing never goes unnoticed.
    """
    for h in headers:
        for k in GAIN_KEYWORDS:
            if k not in h:
                continue
            v = h[k]
            if isinstance(v, str):
                try:
                    v = float(v.strip())
                except ValueError:
                    pass
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
                return float(v)
            warnings.warn(f"{path}: header keyword {k} = {h[k]!r} is not a positive number of electrons per "
                          "ADU; ignored (pass gain= to read_image)", UserWarning, stacklevel=3)
    return None


def _image_plane(hdul, key, path, role: str, shape: tuple[int, int] | None) -> np.ndarray:
    """The 2-D numeric array of extension ``key`` (the ``role`` of the image: image, ERR, VAR, ...)."""
    h = get_hdu(hdul, key, path)
    data = hdu_data(hdul, key, path)
    if data is None or not getattr(h, "is_image", False) or np.ndim(data) != 2:
        kind = ("has no data" if data is None else f"is a table ({type(h).__name__})"
                if not getattr(h, "is_image", False) else f"holds a {np.ndim(data)}-D array of shape "
                                                          f"{np.shape(data)}")
        cls = ObservationError if role == "image" else FileFormatError
        raise cls(f"{path}: {role} extension {key!r} {kind}, not a 2-D image (extensions present: "
                  f"{describe_hdus(hdul)})")
    if data.dtype.kind not in "biuf":
        raise FileFormatError(f"{path}: {role} extension {key!r} holds {data.dtype} values, not real numbers")
    if shape is not None and data.shape != shape:
        raise ObservationError(f"{path}: {role} extension {key!r} has shape {data.shape}, image has {shape}")
    return np.array(data)


def read_image(
    path: str | Path,
    hdu: int | str | tuple[str, int] | None = None,
    *,
    err: int | str | tuple[str, int] | None = None,
    var: int | str | tuple[str, int] | None = None,
    ivar: int | str | tuple[str, int] | None = None,
    dq: int | str | tuple[str, int] | None = None,
    bad_bits: int | None = None,
    mask_invalid: bool = True,
    unit: str | None = None,
    gain: float | None = None,
    sky: np.ndarray | float | None = None,
    wcs: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> Observation:
    """Read an image HDU and optional noise / data-quality extensions into an :class:`Observation`.

    Args:
        path: FITS file (compressed ``.gz``/``.bz2`` files are read directly).
        hdu: image extension (index, EXTNAME or (EXTNAME, EXTVER)); default the first 2-D image HDU.
        err: extension holding the per-pixel standard deviation (e.g. ``"ERR"``), units of the image;
            negative values are invalid (like a non-positive variance).
        var: extension holding the variance (units of the image squared).
        ivar: extension holding the inverse variance (0 = no information, masked).
        dq: data-quality extension; a pixel is masked where ``dq & bad_bits != 0`` (any non-zero
            value when ``bad_bits`` is None; a non-finite floating-point DQ value is always bad).
        mask_invalid: also mask non-finite pixels and pixels with non-finite or non-positive
            variance (otherwise they are reported by validation). How many were masked is in
            ``meta["masked_invalid"]`` (and logged at INFO level).
        unit: unit of the data; default the BUNIT keyword (``""`` if absent).
        gain: electrons per ADU; default the first of :data:`GAIN_KEYWORDS` found in the headers
            (a keyword with an unusable value is skipped with a warning).
        sky: sky level included in the data (scalar or array), if known.
        wcs: read the celestial WCS of the image header (False: none, e.g. for a broken WCS).
        meta: extra metadata; ``source``, ``hdu`` and ``header`` (the image header) are added.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: the file is not FITS, is truncated or corrupt, a noise/DQ extension is not a
            2-D numeric image, or the header's WCS is invalid.
        ExtensionNotFoundError: a requested extension is missing (the message lists those present).
        ObservationError: the arrays are inconsistent, or no pixel is usable (every problem listed).
    """
    given = [k for k, v in (("err", err), ("var", var), ("ivar", ivar)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of err/var/ivar, got {given}")
    with open_fits(path) as hdul:
        idx = _first_image_hdu(hdul, path) if hdu is None else hdu
        data = _image_plane(hdul, idx, path, "image", None)
        label = _hdu_label(hdul, idx) if isinstance(idx, int) else f"extension {idx!r}"
        header = get_hdu(hdul, idx, path).header.copy()
        primary = hdul[0].header
        variance = None
        noise_key = err if err is not None else var if var is not None else ivar
        if noise_key is not None:
            noise = _image_plane(hdul, noise_key, path, given[0].upper(), data.shape).astype(float)
            with np.errstate(divide="ignore", invalid="ignore"):
                variance = (np.where(noise >= 0, noise**2, np.nan) if err is not None
                            else noise if var is not None else 1.0 / noise)
        mask = None
        if dq is not None:
            q = _image_plane(hdul, dq, path, "DQ", data.shape)
            bad_q = np.zeros(q.shape, bool)
            if q.dtype.kind not in "biu":
                bad_q = ~np.isfinite(q)
                q = np.where(bad_q, 0, q).astype(np.int64)
            mask = ((q & bad_bits) == 0 if bad_bits is not None else q == 0) & ~bad_q
    if mask_invalid:
        bad_data = ~np.isfinite(data)
        bad_var = np.zeros(data.shape, bool)
        if variance is not None:
            with np.errstate(invalid="ignore"):
                bad_var = ~(np.isfinite(variance) & (variance > 0))
        bad = bad_data | bad_var
        if bad.all():
            parts = [f"{int(bad_data.sum())} hold NaN/inf"] if bad_data.any() else []
            if bad_var.any():
                fin = noise[np.isfinite(noise)]
                rng = f"; its finite values span {fin.min():.4g} to {fin.max():.4g}" if fin.size else ""
                parts.append(f"{int(bad_var.sum())} have a non-positive or non-finite variance (from "
                             f"{given[0]}={noise_key!r}{rng}: check the extension holds what the keyword "
                             "says, err= a standard deviation, var= a variance, ivar= an inverse variance)")
            raise ObservationError(f"{path}: no usable pixel: of the {data.size} pixels of {label}, "
                                   + " and ".join(parts))
        if bad.any() or mask is not None:
            mask = (np.ones(data.shape, bool) if mask is None else mask) & ~bad
        if bad.any():
            log.info("%s: masked %d pixel(s) with NaN/inf data and %d with a non-positive or non-finite "
                     "variance", path, int(bad_data.sum()), int((bad_var & ~bad_data).sum()))
        meta = {"masked_invalid": {"data": int(bad_data.sum()), "variance": int((bad_var & ~bad_data).sum())},
                **(meta or {})}
    if unit is None:
        unit = str(header.get("BUNIT", primary.get("BUNIT", ""))).strip()
    return Observation(
        data=data, variance=variance, mask=mask, wcs=read_wcs(header, source=path) if wcs else None,
        gain=gain if gain is not None else _header_gain(path, header, primary), sky=sky, unit=unit,
        meta={"source": str(path), "hdu": idx, "header": header, **(meta or {})},
    )


def _check_writable(name: str, a: np.ndarray) -> None:
    """Raise ValueError unless ``a`` (extension ``name``) can be written as a FITS image."""
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got shape {a.shape}")
    if a.dtype.kind == "c":
        raise ValueError(f"{name}: complex-valued data (dtype {a.dtype}) cannot be written as a FITS image; "
                         "write the real and imaginary parts (np.real, np.imag) or the modulus as separate "
                         "extensions")
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name}: FITS images hold numbers, got dtype {a.dtype}")


def write_image(
    path: str | Path,
    images: Mapping[str, np.ndarray] | None = None,
    *,
    wcs: WCS | None = None,
    header: Mapping[str, Any] | fits.Header | None = None,
    overwrite: bool = False,
    **named: np.ndarray,
) -> Path:
    """Write named 2-D arrays as image extensions, each carrying ``wcs``.

    Example: ``write_image("fit.fits", DATA=obs.data, MODEL=model, RESIDUAL=obs.data - model,
    wcs=obs.wcs)``. The primary HDU is empty and holds ``header`` (extra keywords; values may be
    ``(value, comment)`` pairs). Boolean arrays are written as uint8. Extension names are
    upper-cased. Read back with :func:`read_image` (``hdu="MODEL"``, ...).

    Raises:
        ValueError: no arrays, or an array that is not 2-D, is complex-valued or is not numeric.
        FileExistsError: ``path`` exists and ``overwrite`` is False.

    The file is written under a temporary name and renamed into place.
    """
    arrays = {**(images or {}), **named}
    if not arrays:
        raise ValueError("write_image needs at least one array")
    prim = fits.PrimaryHDU()
    for k, v in (header or {}).items():
        prim.header[k] = v
    wcs_header = wcs.to_header(relax=True) if wcs is not None else None
    hdus = [prim]
    for name, arr in arrays.items():
        a = np.asarray(arr)
        _check_writable(name, a)
        if a.dtype == bool:
            a = a.astype(np.uint8)
        h = fits.ImageHDU(a, name=name.upper())
        if wcs_header is not None:
            h.header.update(wcs_header)
        hdus.append(h)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    with atomic_path(path) as tmp:  # a reader sees the old file or the complete new one
        fits.HDUList(hdus).writeto(tmp)
    return path


def write_observation(
    path: str | Path,
    obs: Observation,
    *,
    model: np.ndarray | None = None,
    overwrite: bool = False,
    **extra: np.ndarray,
) -> Path:
    """Write an :class:`Observation` (DATA, VAR, DQ, SKY, then MODEL and RESIDUAL if ``model``).

    DQ is 1 on masked pixels, so ``read_image(path, hdu="DATA", var="VAR", dq="DQ")`` reads it back.
    ``obs`` may also be a bare 2-D array (wrapped in an :class:`Observation`, so validated). ``model``
    (units of ``obs.data``) must have the shape of the image.

    Raises:
        ObservationError: ``obs`` is an invalid array (e.g. complex-valued data).
        ValueError: ``model`` or an ``extra`` array has the wrong shape, or is complex or not numeric.
    """
    if not isinstance(obs, Observation):
        obs = Observation(obs)
    arrays: dict[str, np.ndarray] = {"DATA": obs.data}
    if obs.variance is not None:
        arrays["VAR"] = obs.variance
    if obs.mask is not None:
        arrays["DQ"] = (~obs.mask).astype(np.uint8)
    if obs.sky is not None:
        arrays["SKY"] = np.broadcast_to(np.asarray(obs.sky, dtype=obs.data.dtype), obs.shape)
    if model is not None:
        model = np.asarray(model)
        _check_writable("MODEL", model)
        if model.shape != obs.shape:
            raise ValueError(f"MODEL: shape {model.shape} differs from the image's {obs.shape}")
        arrays["MODEL"] = model
        arrays["RESIDUAL"] = obs.data - model
    arrays.update(extra)
    header: dict[str, Any] = {}
    if obs.unit:
        header["BUNIT"] = obs.unit
    if obs.gain is not None:
        header["GAIN"] = (obs.gain, "electrons per ADU")
    if "origin" in obs.meta:
        header["ORIGROW"] = (int(obs.meta["origin"][0]), "parent-frame row of pixel [0,0], 0-based")
        header["ORIGCOL"] = (int(obs.meta["origin"][1]), "parent-frame col of pixel [0,0], 0-based")
    for k in ("band", "run", "camcol", "field"):
        if k in obs.meta:
            header[k.upper()] = obs.meta[k]
    return write_image(path, arrays, wcs=obs.wcs, header=header, overwrite=overwrite)
