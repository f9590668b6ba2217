"""Read and write FITS images: :func:`read_image`, :func:`write_image`, :func:`write_observation`.

Extensions are chosen by name (EXTNAME, case-insensitive, optionally ``(name, ver)``) or 0-based
index. Pixel conventions are those of :mod:`starmodels.io.observation`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from starmodels.io.observation import Observation, ObservationError

GAIN_KEYWORDS = ("GAIN", "CCDGAIN", "EGAIN", "ATODGAIN")
"""Header keywords searched (image HDU first, then the primary) for the gain in electrons/ADU."""


class ExtensionNotFoundError(LookupError):
    """A requested FITS extension does not exist; the message names the file and lists what is there."""


def describe_hdus(hdul: fits.HDUList) -> str:
    """One line per HDU: index, EXTNAME, type and shape, e.g. ``1 'SCI' ImageHDU (100, 100)``."""
    lines = []
    for i, h in enumerate(hdul):
        shape = h.shape if hasattr(h, "shape") else ()
        lines.append(f"{i} {h.name!r} {type(h).__name__} {tuple(shape) if shape else '(empty)'}")
    return "; ".join(lines)


def get_hdu(hdul: fits.HDUList, key: int | str | tuple[str, int], path: str | Path = "?"):
    """The HDU ``key`` (index, EXTNAME or (EXTNAME, EXTVER)) or :class:`ExtensionNotFoundError`."""
    try:
        return hdul[key]
    except (KeyError, IndexError):
        raise ExtensionNotFoundError(
            f"{path}: no extension {key!r}; extensions present: {describe_hdus(hdul)}") from None


def read_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS of an image header (0-based pixels), or None when it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(header)
    if not w.has_celestial:
        return None
    return w.celestial if w.naxis != 2 else w


def _first_image_hdu(hdul, path) -> int:
    for i, h in enumerate(hdul):
        if getattr(h, "is_image", False) and h.data is not None and h.data.ndim == 2:
            return i
    raise ExtensionNotFoundError(f"{path}: no 2-D image HDU; extensions present: {describe_hdus(hdul)}")


def _header_gain(*headers) -> float | None:
    for h in headers:
        for k in GAIN_KEYWORDS:
            v = h.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                return float(v)
    return None


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
    meta: Mapping[str, Any] | None = None,
) -> Observation:
    """Read an image HDU and optional noise / data-quality extensions into an :class:`Observation`.

    Args:
        path: FITS file (compressed ``.gz``/``.bz2`` files are read directly).
        hdu: image extension (index, EXTNAME or (EXTNAME, EXTVER)); default the first 2-D image HDU.
        err: extension holding the per-pixel standard deviation (e.g. ``"ERR"``), units of the image.
        var: extension holding the variance (units of the image squared).
        ivar: extension holding the inverse variance (0 = no information, masked).
        dq: data-quality extension; a pixel is masked where ``dq & bad_bits != 0`` (any non-zero
            value when ``bad_bits`` is None).
        mask_invalid: also mask non-finite pixels and pixels with non-finite or non-positive
            variance (otherwise they are reported by validation).
        unit: unit of the data; default the BUNIT keyword (``""`` if absent).
        gain: electrons per ADU; default the first of :data:`GAIN_KEYWORDS` found in the headers.
        sky: sky level included in the data (scalar or array), if known.
        meta: extra metadata; ``source``, ``hdu`` and ``header`` (the image header) are added.

    Raises:
        ExtensionNotFoundError: a requested extension is missing (the message lists those present).
        ObservationError: the arrays are inconsistent (every problem listed).
    """
    given = [k for k, v in (("err", err), ("var", var), ("ivar", ivar)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of err/var/ivar, got {given}")
    with fits.open(path, memmap=False) as hdul:
        idx = _first_image_hdu(hdul, path) if hdu is None else hdu
        img = get_hdu(hdul, idx, path)
        if img.data is None or img.data.ndim != 2:
            raise ObservationError(f"{path}: extension {idx!r} is not a 2-D image "
                                   f"(extensions present: {describe_hdus(hdul)})")
        data = np.array(img.data)
        header = img.header.copy()
        primary = hdul[0].header
        variance = None
        noise_key = err if err is not None else var if var is not None else ivar
        if noise_key is not None:
            noise = np.array(get_hdu(hdul, noise_key, path).data, dtype=float)
            if noise.shape != data.shape:
                raise ObservationError(f"{path}: noise extension {noise_key!r} has shape {noise.shape}, "
                                       f"image {idx!r} has {data.shape}")
            with np.errstate(divide="ignore", invalid="ignore"):
                variance = noise**2 if err is not None else noise if var is not None else 1.0 / noise
        mask = None
        if dq is not None:
            q = np.asarray(get_hdu(hdul, dq, path).data)
            if q.shape != data.shape:
                raise ObservationError(f"{path}: DQ extension {dq!r} has shape {q.shape}, "
                                       f"image has {data.shape}")
            if q.dtype.kind not in "biu":
                q = q.astype(np.int64)
            mask = (q & bad_bits) == 0 if bad_bits is not None else q == 0
    if mask_invalid:
        bad = ~np.isfinite(data)
        if variance is not None:
            with np.errstate(invalid="ignore"):
                bad |= ~(np.isfinite(variance) & (variance > 0))
        if bad.any() or mask is not None:
            mask = (np.ones(data.shape, bool) if mask is None else mask) & ~bad
    if unit is None:
        unit = str(header.get("BUNIT", primary.get("BUNIT", ""))).strip()
    return Observation(
        data=data, variance=variance, mask=mask, wcs=read_wcs(header),
        gain=gain if gain is not None else _header_gain(header, primary), sky=sky, unit=unit,
        meta={"source": str(path), "hdu": idx, "header": header, **(meta or {})},
    )


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
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array, got shape {a.shape}")
        if a.dtype == bool:
            a = a.astype(np.uint8)
        h = fits.ImageHDU(a, name=name.upper())
        if wcs_header is not None:
            h.header.update(wcs_header)
        hdus.append(h)
    path = Path(path)
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)
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
    """
    arrays: dict[str, np.ndarray] = {"DATA": obs.data}
    if obs.variance is not None:
        arrays["VAR"] = obs.variance
    if obs.mask is not None:
        arrays["DQ"] = (~obs.mask).astype(np.uint8)
    if obs.sky is not None:
        arrays["SKY"] = np.broadcast_to(np.asarray(obs.sky, dtype=obs.data.dtype), obs.shape)
    if model is not None:
        arrays["MODEL"] = np.asarray(model)
        arrays["RESIDUAL"] = obs.data - np.asarray(model)
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
