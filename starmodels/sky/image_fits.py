"""Writing an image with its celestial WCS to a FITS file, atomically (:func:`write_image_fits`)."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from starmodels.atomic import atomic_path
from starmodels.sky.reproject import celestial_wcs

log = logging.getLogger(__name__)

_RESERVED = re.compile(r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|XTENSION|END|BSCALE|BZERO)$")
_WCS_CARD = re.compile(r"^(CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA|PC\d+_|CD\d+_|WCSAXES|A_|B_|AP_|BP_)")


def _fits_array(name: str, data) -> np.ndarray:
    a = np.asarray(data)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind == "c":
        raise ValueError(f"{name}: complex values (dtype {a.dtype}) cannot be written as a FITS image; write "
                         "the real and imaginary parts separately")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name}: a FITS image holds numbers, got dtype {a.dtype}")
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if a.dtype.kind == "u" and a.dtype.itemsize == 8:
        raise ValueError(f"{name}: uint64 cannot be stored in FITS without loss; convert to int64 or float64")
    return a


def _cards(header_cards) -> list[tuple[str, Any, str | None]]:
    if header_cards is None:
        return []
    if isinstance(header_cards, fits.Header):
        return [(c.keyword, c.value, c.comment) for c in header_cards.cards]
    items = header_cards.items() if isinstance(header_cards, Mapping) else header_cards
    out = []
    for item in items:
        if isinstance(item, fits.Card):
            out.append((item.keyword, item.value, item.comment))
            continue
        if isinstance(header_cards, Mapping):
            key, value = item
            comment = None
            if isinstance(value, tuple):
                if len(value) != 2:
                    raise ValueError(f"header card {key!r}: give a value or a (value, comment) pair, "
                                     f"got {value!r}")
                value, comment = value
        elif isinstance(item, tuple | list) and len(item) in (2, 3):
            key, value, comment = (*item, None)[:3]
        else:
            raise ValueError("header_cards: each card must be (keyword, value) or (keyword, value, "
                             f"comment), got {item!r}")
        out.append((str(key), value, comment))
    return out


def write_image_fits(path, data, wcs: WCS | None, *, unit: str | None = None, header_cards=None,
                     extra_hdus=None, overwrite: bool = False) -> Path:
    """Write an image (or a cube of images on one grid) with its WCS to a FITS file, atomically.

    The image goes in the primary HDU with the WCS keywords of ``wcs`` (written with
    ``wcs.to_header(relax=True)``, so SIP distortions are kept), ``BUNIT`` if ``unit`` is given and
    ``header_cards``; read it back with :func:`read_channel` (``plane=`` for a cube) or
    :func:`starmodels.io.read_wcs`. The file is written under a temporary name in the same folder and
    renamed into place (:func:`starmodels.atomic.atomic_path`): a reader sees the old file or the complete
    new one, and nothing is left behind on failure.

    Args:
        path: the file to write (its folder must exist).
        data: ``(H, W)`` image or ``(N, H, W)`` cube of real numbers (booleans are written as uint8);
            any byte order.
        wcs: 2-D celestial astropy WCS of the pixel grid (0-based pixels), or None for no WCS.
        unit: flux unit, written as ``BUNIT`` (e.g. ``"nJy"``); a unit astropy cannot parse is written
            with a warning.
        header_cards: extra keywords: a dict ``{keyword: value or (value, comment)}``, a list of
            ``(keyword, value[, comment])`` or a :class:`astropy.io.fits.Header`. Structural keywords
            (``NAXIS``, ``BITPIX``, ...) and WCS keywords are refused (give the WCS as ``wcs``).
        extra_hdus: more HDUs after the image: a dict ``{EXTNAME: array}`` (image extensions; those
            with the image's ``(H, W)`` get the WCS too) or a list of astropy HDUs.
        overwrite: replace an existing file (otherwise FileExistsError).

    Returns:
        The path written.

    Raises:
        ValueError: bad data, WCS, unit or cards, or a folder that does not exist
            (:class:`starmodels.atomic.ResultError`, a ValueError).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    a = _fits_array("data", data)
    if a.ndim not in (2, 3):
        raise ValueError(f"{path}: data must be an image (H, W) or a cube (N, H, W), got shape {a.shape}")
    hdr = fits.Header()
    if wcs is not None:
        cel = celestial_wcs("wcs", wcs)
        hdr.update(cel.to_header(relax=True))
    wcs_keys = set(hdr.keys())
    if unit is not None:
        if not isinstance(unit, str):
            raise ValueError(f"{path}: unit must be a string, got {unit!r}")
        if unit.strip():
            import astropy.units as u

            try:
                u.Unit(unit)
            except ValueError:
                warnings.warn(f"{path}: unit {unit!r} is not a unit astropy understands; written as given",
                              UserWarning, stacklevel=2)
            hdr["BUNIT"] = unit.strip()
    for key, value, comment in _cards(header_cards):
        k = key.upper()
        if _RESERVED.match(k):
            raise ValueError(f"{path}: header card {key!r} is a structural FITS keyword; it is set from "
                             "the data")
        if k in wcs_keys or _WCS_CARD.match(k):
            raise ValueError(f"{path}: header card {key!r} is a WCS keyword; give the WCS as wcs=")
        if k == "BUNIT" and unit is not None:
            raise ValueError(f"{path}: BUNIT given both as unit= and in header_cards")
        try:
            hdr[key] = value if comment is None else (value, comment)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: header card {key!r} = {value!r} cannot be written: {e}") from None
    hdus = [fits.PrimaryHDU(a, header=hdr)]
    if extra_hdus is not None:
        if isinstance(extra_hdus, Mapping):
            for name, arr in extra_hdus.items():
                e = _fits_array(f"extra HDU {name!r}", arr)
                h = fits.ImageHDU(e, name=str(name).upper())
                if wcs is not None and e.shape[-2:] == a.shape[-2:]:
                    h.header.update(cel.to_header(relax=True))
                hdus.append(h)
        else:
            for h in extra_hdus:
                if isinstance(h, fits.PrimaryHDU) or not isinstance(h, fits.hdu.base.ExtensionHDU):
                    raise ValueError(f"{path}: extra_hdus must be extension HDUs (ImageHDU, BinTableHDU, "
                                     f"...), got {type(h).__name__}")
                hdus.append(h)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)
    return path
