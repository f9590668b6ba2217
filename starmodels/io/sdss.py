"""SDSS imaging (rerun 301): read corrected frames into electrons, and a cached downloader.

A ``frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2`` holds (SDSS ``frame`` data model):

* HDU0: the sky-subtracted, calibrated image in nanomaggies, 1489 x 2048, with a TAN WCS;
* HDU1: the calibration vector ``calib`` (nanomaggies per count) per column;
* HDU2: the sky in counts on a coarse grid ``ALLSKY`` (about 192 x 256) with, for every image
  row and column, its fractional position ``YINTERP`` / ``XINTERP`` in that grid;
* HDU3: the astrometric transformation (asTrans row).

:func:`read_sdss_frame` undoes the calibration and sky subtraction, as the data model prescribes:
``counts = img / calib[col] + sky_counts``, ``electrons = counts * gain``, and the variance
``electrons + dark_variance * gain**2`` (``dark_variance`` in counts^2, i.e. the data model's
``dn_err = sqrt(dn / gain + darkVariance)`` in counts, times ``gain**2``).

The cache (argument, env ``STARMODELS_SDSS_CACHE``, default ``~/.cache/starmodels/sdss``) is laid
out as ``{run}/{camcol}/{field}/`` for frames and psField files and ``{run}/{camcol}/`` for
photoField files; a file already in the cache is never downloaded again.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path

import numpy as np
from astropy.io import fits

from starmodels.atomic import atomic_path
from starmodels.io.fits import read_wcs
from starmodels.io.fits_open import FileFormatError, get_hdu, hdu_data, open_fits
from starmodels.io.observation import Observation
from starmodels.io.psfield import BANDS, read_psfield_calibration

SAS_URL = "https://data.sdss.org/sas"
DEFAULT_DR = 17
RERUN = 301
CACHE_ENV = "STARMODELS_SDSS_CACHE"


# -- names, URLs and the cache ----------------------------------------------------
def sdss_filename(kind: str, run: int, camcol: int, field: int | None = None, band: str | None = None) -> str:
    """SAS file name of a ``frame``, ``psField`` or ``photoField`` file."""
    if kind == "frame":
        if band not in tuple(BANDS):
            raise ValueError(f"band must be one of {list(BANDS)}, got {band!r}")
        return f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2"
    if kind == "psField":
        return f"psField-{run:06d}-{camcol}-{field:04d}.fit"
    if kind == "photoField":
        return f"photoField-{run:06d}-{camcol}.fits"
    raise ValueError(f"kind must be 'frame', 'psField' or 'photoField', got {kind!r}")


def sdss_url(kind: str, run: int, camcol: int, field: int | None = None, band: str | None = None, *,
             dr: int = DEFAULT_DR, rerun: int = RERUN) -> str:
    """Science Archive Server URL of a ``frame``, ``psField`` or ``photoField`` file."""
    name = sdss_filename(kind, run, camcol, field, band)
    base = f"{SAS_URL}/dr{dr}/eboss"
    if kind == "frame":
        return f"{base}/photoObj/frames/{rerun}/{run}/{camcol}/{name}"
    if kind == "psField":
        return f"{base}/photo/redux/{rerun}/{run}/objcs/{camcol}/{name}"
    return f"{base}/photoObj/{rerun}/{run}/{name}"


def sdss_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Cache root: ``cache_dir``, else env ``STARMODELS_SDSS_CACHE``, else ``~/.cache/starmodels/sdss``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "starmodels" / "sdss"


def _local_candidates(kind, run, camcol, field, band, cache_dir) -> list[Path]:
    root = sdss_cache_dir(cache_dir) / str(run) / str(camcol)
    name = sdss_filename(kind, run, camcol, field, band)
    if kind == "photoField":
        return [root / name]
    folder = root / str(field)
    if kind == "psField":  # stored as .fits by some tools (e.g. the shared test data), .fit on the SAS
        return [folder / (name + "s"), folder / name]
    return [folder / name, folder / name.removesuffix(".bz2")]


def _fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` to ``dest`` (atomically: a partial file never appears under ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=timeout) as resp, \
            open(tmp, "wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def _cached(kind, run, camcol, field, band, cache_dir, dr, timeout, download=True) -> Path:
    cands = _local_candidates(kind, run, camcol, field, band, cache_dir)
    for p in cands:
        if p.is_file():
            return p
    if not download:
        raise FileNotFoundError(f"SDSS {kind} not in the cache (looked for {', '.join(map(str, cands))}); "
                                f"pass download=True or use download_sdss_{kind.lower()}()")
    _fetch(sdss_url(kind, run, camcol, field, band, dr=dr), cands[0], timeout=timeout)
    return cands[0]


def download_sdss_frame(run: int, camcol: int, field: int, band: str, cache_dir: str | Path | None = None, *,
                        dr: int = DEFAULT_DR, timeout: float = 60.0) -> Path:
    """Path of the cached ``frame`` file, downloaded from the SAS only if not already cached."""
    return _cached("frame", run, camcol, field, band, cache_dir, dr, timeout)


def download_sdss_psfield(run: int, camcol: int, field: int, cache_dir: str | Path | None = None, *,
                          dr: int = DEFAULT_DR, timeout: float = 60.0) -> Path:
    """Path of the cached ``psField`` file, downloaded only if not already cached."""
    return _cached("psField", run, camcol, field, None, cache_dir, dr, timeout)


def download_sdss_photofield(run: int, camcol: int, cache_dir: str | Path | None = None, *,
                             dr: int = DEFAULT_DR, timeout: float = 60.0) -> Path:
    """Path of the cached ``photoField`` file (per run and camcol), downloaded only if not cached."""
    return _cached("photoField", run, camcol, None, None, cache_dir, dr, timeout)


# -- calibration ----------------------------------------------------------------------
def read_photofield_calibration(path: str | Path, field: int) -> dict[str, dict[str, float]]:
    """``{band: {"gain", "dark_variance"}}`` of ``field`` from a photoField table.

    Units: ``gain`` electrons/ADU, ``dark_variance`` ADU^2 per pixel.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not a readable FITS file, truncated, or HDU 1 is not a photoField table
            (no FIELD/GAIN/DARK_VARIANCE column, or not one value per band).
        ExtensionNotFoundError: the file has no HDU 1.
        ValueError: the table has no row for ``field`` (the message gives the fields it covers).
    """
    what = "SDSS photoField file"
    with open_fits(path, what=what) as hdul:
        h = get_hdu(hdul, 1, path)
        if not isinstance(h, fits.BinTableHDU):
            raise FileFormatError(f"{path}: HDU 1 of the {what} is a {type(h).__name__}, not a binary table")
        t = hdu_data(hdul, 1, path, what=what)
        missing = [c for c in ("FIELD", "GAIN", "DARK_VARIANCE") if c not in t.columns.names]
        if missing:
            raise FileFormatError(f"{path}: HDU 1 of the {what} has no column(s) {', '.join(missing)} "
                                  f"(columns present: {', '.join(t.columns.names)}); is this a photoField "
                                  "file?")
        fields = np.asarray(t["FIELD"])
        rows = np.flatnonzero(fields == field)
        if rows.size == 0:
            span = f"fields {fields.min()}-{fields.max()}" if fields.size else "no rows"
            raise ValueError(f"{path}: no row for field {field} (the table covers {span})")
        r = rows[0]
        gain, dark = np.asarray(t["GAIN"][r], float).ravel(), np.asarray(t["DARK_VARIANCE"][r], float).ravel()
        if gain.size < len(BANDS) or dark.size < len(BANDS):
            raise FileFormatError(f"{path}: GAIN/DARK_VARIANCE of field {field} hold {gain.size}/{dark.size} "
                                  f"values, not one per band {BANDS}")
        return {b: {"gain": float(gain[i]), "dark_variance": float(dark[i])} for i, b in enumerate(BANDS)}


def _checked_calibration(c: dict[str, float], band: str, source) -> tuple[float, float, str]:
    """(gain, dark_variance, source) of one band, or :class:`FileFormatError` for unusable values."""
    gain, dark = c.get("gain", float("nan")), c.get("dark_variance", float("nan"))
    if not (np.isfinite(gain) and gain > 0 and np.isfinite(dark) and dark >= 0):
        raise FileFormatError(f"{source}: unusable {band}-band calibration: gain {gain} electrons/ADU, dark "
                              f"variance {dark} ADU^2 (need gain > 0 and dark variance >= 0); pass gain= and "
                              "dark_variance= to read_sdss_frame")
    return float(gain), float(dark), str(source)


def _find_calibration(frame_path: Path, run, camcol, field, band, psfield, photofield, cache_dir, download):
    """Gain and dark variance of ``band``: from psField (HDU6), else photoField; which file was used."""
    here = frame_path.parent
    name = sdss_filename("psField", run, camcol, field)
    ps = [Path(psfield)] if psfield is not None else [
        here / (name + "s"), here / name, *_local_candidates("psField", run, camcol, field, None, cache_dir)]
    for p in ps:
        if p.is_file():
            return _checked_calibration(read_psfield_calibration(p)[band], band, p)
    pf = [Path(photofield)] if photofield is not None else [
        here.parent / f"photoField-{run:06d}-{camcol}.fits",
        *_local_candidates("photoField", run, camcol, None, None, cache_dir)]
    for p in pf:
        if p.is_file():
            return _checked_calibration(read_photofield_calibration(p, field)[band], band, p)
    if download:
        p = download_sdss_psfield(run, camcol, field, cache_dir)
        return _checked_calibration(read_psfield_calibration(p)[band], band, p)
    raise FileNotFoundError(
        f"no gain for {frame_path.name}: give gain= and dark_variance=, or a psField/photoField file "
        f"(looked for {', '.join(str(p) for p in ps + pf)}; download=True fetches the psField)")


# -- the sky --------------------------------------------------------------------------
def _interp_axis(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``a`` at fractional indices ``coords`` along ``axis``, clamped at edges."""
    n = a.shape[axis]
    c = np.clip(coords, 0, n - 1)
    i0 = np.minimum(np.floor(c).astype(int), n - 2)
    w = c - i0
    lo, hi = np.take(a, i0, axis=axis), np.take(a, i0 + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    w = w.reshape(shape)
    return lo * (1 - w) + hi * w


def sdss_sky(allsky: np.ndarray, xinterp: np.ndarray, yinterp: np.ndarray,
             method: str = "linear") -> np.ndarray:
    """The sky in counts at every frame pixel, (len(yinterp), len(xinterp)).

    ``linear``: bilinear interpolation of the ``ALLSKY`` grid at (YINTERP, XINTERP), clamped at
    the grid edges (the data model's IDL ``interpolate(allsky, xinterp, yinterp, /grid)``).
    ``nearest``: nearest grid value after clipping (what StarNet/BLISS use; differs from linear
    by < 1e-4 of the sky on the M2 field).
    """
    allsky = np.asarray(allsky, dtype=float)
    x, y = np.asarray(xinterp, dtype=float), np.asarray(yinterp, dtype=float)
    if method == "linear":
        return _interp_axis(_interp_axis(allsky, y, 0), x, 1)
    if method == "nearest":
        iy = np.round(np.clip(y, 0, allsky.shape[0] - 1)).astype(int)
        ix = np.round(np.clip(x, 0, allsky.shape[1] - 1)).astype(int)
        return allsky[np.ix_(iy, ix)]
    raise ValueError(f"sky interpolation must be 'linear' or 'nearest', got {method!r}")


# -- the reader -------------------------------------------------------------------------
_FRAME_RE = re.compile(r"frame-([ugriz])-(\d{6})-(\d)-(\d{4})\.fits")
_FRAME = "SDSS frame file"


def _header_int(hdr, key: str, fallback, path) -> int:
    """Integer header keyword ``key`` (else ``fallback``), or :class:`FileFormatError` naming it."""
    v = hdr.get(key, fallback)
    try:
        return int(v)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: header keyword {key} = {v!r} of the {_FRAME} is not an integer"
                              ) from None


def _header_float(hdr, key: str, path) -> float:
    """Float header keyword ``key`` (NaN when absent), or :class:`FileFormatError` naming it."""
    v = hdr.get(key, float("nan"))
    try:
        return float(v)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: header keyword {key} = {v!r} of the {_FRAME} is not a number"
                              ) from None


def _frame_arrays(hdul, path):
    """Image, calibration vector and sky table (ALLSKY, XINTERP, YINTERP) of a frame, shape-checked."""
    img = hdu_data(hdul, 0, path, what=_FRAME)
    if img is None or np.ndim(img) != 2:
        raise FileFormatError(f"{path}: HDU 0 of the {_FRAME} holds "
                              f"{'no data' if img is None else np.shape(img)}, "
                              "not a 2-D image; is this an SDSS frame-*.fits.bz2 file?")
    img = np.asarray(img, dtype=float)
    ny, nx = img.shape
    calib = hdu_data(hdul, 1, path, what=_FRAME)
    calib = None if calib is None else np.asarray(calib, dtype=float).ravel()
    if calib is None or calib.shape != (nx,):
        raise FileFormatError(f"{path}: HDU 1 of the {_FRAME} should hold the calibration vector of {nx} "
                              "values (nanomaggies per count per column), got "
                              f"{None if calib is None else calib.shape}")
    bad = ~(np.isfinite(calib) & (calib > 0))
    if bad.any():
        raise FileFormatError(f"{path}: the calibration vector (HDU 1) of the {_FRAME} has {int(bad.sum())} "
                              f"non-positive or non-finite value(s), first at column {int(np.argmax(bad))}")
    skytab = hdu_data(hdul, 2, path, what=_FRAME)
    names = getattr(getattr(skytab, "columns", None), "names", None) or []
    missing = [c for c in ("ALLSKY", "XINTERP", "YINTERP") if c not in names]
    if missing:
        raise FileFormatError(f"{path}: HDU 2 of the {_FRAME} should be the sky table; it has no column(s) "
                              f"{', '.join(missing)} (columns present: {', '.join(names) or 'none'})")
    allsky = np.asarray(skytab["ALLSKY"][0], dtype=float)
    xinterp = np.asarray(skytab["XINTERP"][0], dtype=float).ravel()
    yinterp = np.asarray(skytab["YINTERP"][0], dtype=float).ravel()
    if allsky.ndim != 2 or min(allsky.shape) < 2 or not np.all(np.isfinite(allsky)):
        raise FileFormatError(f"{path}: the sky grid ALLSKY (HDU 2) of the {_FRAME} is not a finite 2-D grid "
                              f"of at least 2 x 2 values (shape {allsky.shape})")
    if xinterp.shape != (nx,) or yinterp.shape != (ny,):
        raise FileFormatError(f"{path}: the sky interpolation vectors XINTERP {xinterp.shape}, YINTERP "
                              f"{yinterp.shape} (HDU 2) do not match the {ny}x{nx} image")
    return img, calib, allsky, xinterp, yinterp


def read_sdss_frame(
    source: str | Path | tuple[int, int, int, str],
    *,
    cache_dir: str | Path | None = None,
    download: bool = False,
    gain: float | None = None,
    dark_variance: float | None = None,
    psfield: str | Path | None = None,
    photofield: str | Path | None = None,
    sky_interp: str = "linear",
    dtype=np.float32,
) -> Observation:
    """An SDSS corrected frame as an :class:`Observation` in electrons, with the sky added back.

    Args:
        source: path of a ``frame-*.fits[.bz2]`` file, or ``(run, camcol, field, band)`` looked up
            in the cache (and downloaded there if ``download``).
        cache_dir: cache root (see :func:`sdss_cache_dir`).
        download: allow network access for files missing from the cache.
        gain: electrons per count; default from the psField (HDU6) next to the frame or in the
            cache, else the photoField of the camcol.
        dark_variance: counts^2 per pixel (read noise + dark current); default as ``gain``.
        psfield, photofield: explicit calibration files.
        sky_interp: ``"linear"`` (SDSS data model) or ``"nearest"`` (see :func:`sdss_sky`).
        dtype: float type of the returned arrays.

    Returns:
        ``data`` = ``(img / calib + sky_counts) * gain`` [electrons, sky included];
        ``variance`` = ``max(data, 0) + dark_variance * gain**2`` [electrons^2];
        ``sky`` = ``sky_counts * gain`` [electrons]; ``mask`` = finite pixels; the frame WCS;
        ``meta``: ``band, run, camcol, field, rerun, gain, dark_variance`` (counts^2),
        ``nelec_per_nmgy`` (per pixel, = gain / calib of the column; multiply nanomaggies by it
        to get electrons), ``exptime`` (s), ``origin`` (0, 0), ``source``, ``calibration_source``,
        ``sky_interp``, ``header``.

    Raises:
        FileNotFoundError: the frame (or, without ``gain``/``dark_variance``, every calibration
            file) is missing.
        FileFormatError: the frame or a calibration file is not FITS, truncated or corrupt, or does
            not hold what an SDSS file of its kind holds (HDUs 0-2, columns, shapes, positive
            calibration), or its header's WCS is invalid; the message names the file.
        ExtensionNotFoundError: an HDU is missing.
    """
    if isinstance(source, tuple | list):
        run, camcol, field, band = source
        path = _cached("frame", int(run), int(camcol), int(field), band, cache_dir, DEFAULT_DR, 60.0,
                       download)
    else:
        path = Path(source)
    with open_fits(path, what=_FRAME) as hdul:
        hdr = hdul[0].header.copy()
        m = _FRAME_RE.search(path.name)
        run = _header_int(hdr, "RUN", m.group(2) if m else -1, path)
        camcol = _header_int(hdr, "CAMCOL", m.group(3) if m else -1, path)
        # the field number comes from the file name: the header's FRAME is the CCD's own frame counter,
        # which differs from the field in every band but r (138 for i in field 136 of run 2583)
        field = int(m.group(4)) if m else _header_int(hdr, "FRAME", -1, path)
        band = str(hdr.get("FILTER", m.group(1) if m else "")).strip()
        if band not in tuple(BANDS):
            raise FileFormatError(f"{path}: the band of the {_FRAME} (header FILTER, else the file name) is "
                                  f"{band!r}, not one of {list(BANDS)}; is this an SDSS frame file?")
        calib_source = "arguments"
        if gain is None or dark_variance is None:  # before any pixel work: fail fast
            g, dv, calib_source = _find_calibration(path, run, camcol, field, band, psfield, photofield,
                                                    cache_dir, download)
            gain = g if gain is None else gain
            dark_variance = dv if dark_variance is None else dark_variance
        gain, dark_variance = float(gain), float(dark_variance)
        img, calib, allsky, xinterp, yinterp = _frame_arrays(hdul, path)
    ny, nx = img.shape

    sky_counts = sdss_sky(allsky, xinterp, yinterp, sky_interp)
    counts = img / calib[None, :] + sky_counts
    electrons = counts * gain
    mask = np.isfinite(electrons)
    with np.errstate(invalid="ignore"):
        variance = np.maximum(electrons, 0.0) + dark_variance * gain**2
    nelec = np.broadcast_to((gain / calib).astype(dtype)[None, :], (ny, nx))
    return Observation(
        data=electrons.astype(dtype), variance=variance.astype(dtype), mask=mask,
        wcs=read_wcs(hdr, source=path),
        gain=gain, sky=(sky_counts * gain).astype(dtype), unit="electron",
        meta={
            "name": f"SDSS frame {band} {run}-{camcol}-{field}", "band": band, "run": run,
            "camcol": camcol, "field": field, "rerun": str(hdr.get("RERUN", RERUN)).strip(), "gain": gain,
            "dark_variance": dark_variance, "nelec_per_nmgy": nelec,
            "exptime": _header_float(hdr, "EXPTIME", path), "origin": (0, 0), "source": str(path),
            "calibration_source": calib_source, "sky_interp": sky_interp, "header": hdr,
        },
    )
