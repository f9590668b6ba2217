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

from starmodels.io.fits import read_wcs
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
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """``{band: {"gain", "dark_variance"}}`` of ``field`` from a photoField table (ADU, ADU^2)."""
    with fits.open(path, memmap=False) as hdul:
        t = hdul[1].data
        rows = np.flatnonzero(np.asarray(t["FIELD"]) == field)
        if rows.size == 0:
            raise ValueError(f"{path}: no row for field {field}")
        r = rows[0]
        return {b: {"gain": float(t["GAIN"][r][i]), "dark_variance": float(t["DARK_VARIANCE"][r][i])}
                for i, b in enumerate(BANDS)}


def _find_calibration(frame_path: Path, run, camcol, field, band, psfield, photofield, cache_dir, download):
    """Gain and dark variance of ``band``: from psField (HDU6), else photoField; which file was used."""
    here = frame_path.parent
    name = sdss_filename("psField", run, camcol, field)
    ps = [Path(psfield)] if psfield is not None else [
        here / (name + "s"), here / name, *_local_candidates("psField", run, camcol, field, None, cache_dir)]
    for p in ps:
        if p.is_file():
            c = read_psfield_calibration(p)[band]
            return c["gain"], c["dark_variance"], str(p)
    pf = [Path(photofield)] if photofield is not None else [
        here.parent / f"photoField-{run:06d}-{camcol}.fits",
        *_local_candidates("photoField", run, camcol, None, None, cache_dir)]
    for p in pf:
        if p.is_file():
            c = read_photofield_calibration(p, field)[band]
            return c["gain"], c["dark_variance"], str(p)
    if download:
        p = download_sdss_psfield(run, camcol, field, cache_dir)
        c = read_psfield_calibration(p)[band]
        return c["gain"], c["dark_variance"], str(p)
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
    """
    if isinstance(source, tuple | list):
        run, camcol, field, band = source
        path = _cached("frame", int(run), int(camcol), int(field), band, cache_dir, DEFAULT_DR, 60.0,
                       download)
    else:
        path = Path(source)
    with fits.open(path, memmap=False) as hdul:
        hdr = hdul[0].header.copy()
        m = _FRAME_RE.search(path.name)
        run = int(hdr.get("RUN", m.group(2) if m else -1))
        camcol = int(hdr.get("CAMCOL", m.group(3) if m else -1))
        field = int(hdr.get("FRAME", m.group(4) if m else -1))
        band = str(hdr.get("FILTER", m.group(1) if m else "")).strip()
        calib_source = "arguments"
        if gain is None or dark_variance is None:  # before decompressing the image: fail fast
            g, dv, calib_source = _find_calibration(path, run, camcol, field, band, psfield, photofield,
                                                    cache_dir, download)
            gain = g if gain is None else gain
            dark_variance = dv if dark_variance is None else dark_variance
        gain, dark_variance = float(gain), float(dark_variance)
        img = np.asarray(hdul[0].data, dtype=float)
        calib = np.asarray(hdul[1].data, dtype=float).ravel()
        skytab = hdul[2].data
        allsky = np.asarray(skytab["ALLSKY"][0], dtype=float)
        xinterp = np.asarray(skytab["XINTERP"][0], dtype=float)
        yinterp = np.asarray(skytab["YINTERP"][0], dtype=float)
    ny, nx = img.shape
    if calib.shape != (nx,) or xinterp.shape != (nx,) or yinterp.shape != (ny,):
        raise ValueError(f"{path}: calibration/sky vectors {calib.shape}, {xinterp.shape}, {yinterp.shape} "
                         f"do not match the {ny}x{nx} image")

    sky_counts = sdss_sky(allsky, xinterp, yinterp, sky_interp)
    counts = img / calib[None, :] + sky_counts
    electrons = counts * gain
    mask = np.isfinite(electrons)
    with np.errstate(invalid="ignore"):
        variance = np.maximum(electrons, 0.0) + dark_variance * gain**2
    nelec = np.broadcast_to((gain / calib).astype(dtype)[None, :], (ny, nx))
    return Observation(
        data=electrons.astype(dtype), variance=variance.astype(dtype), mask=mask, wcs=read_wcs(hdr),
        gain=gain, sky=(sky_counts * gain).astype(dtype), unit="electron",
        meta={
            "name": f"SDSS frame {band} {run}-{camcol}-{field}", "band": band, "run": run,
            "camcol": camcol, "field": field, "rerun": str(hdr.get("RERUN", RERUN)).strip(), "gain": gain,
            "dark_variance": dark_variance, "nelec_per_nmgy": nelec,
            "exptime": float(hdr.get("EXPTIME", "nan")), "origin": (0, 0), "source": str(path),
            "calibration_source": calib_source, "sky_interp": sky_interp, "header": hdr,
        },
    )
