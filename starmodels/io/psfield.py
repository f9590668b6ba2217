"""The SDSS PSF and per-band calibration from a ``psField`` file (imaging rerun 301).

HDUs 1-5 (bands u, g, r, i, z) hold the PHOTO PSF as a Karhunen-Loeve basis: eigen-images
``RROWS_k`` (RNROW x RNCOL, typically 51 x 51) whose weights vary polynomially over the frame,

    a_k = sum_{i<nrow_b, j<ncol_b} C_k[i, j] * (0.001 * rowc)**i * (0.001 * colc)**j
    psf = sum_k a_k * RROWS_k,

as in PHOTO's ``phPsfKLReconstruct`` (``c[i][j]`` with ``i`` the row power). Read with astropy the
``c`` column is a (5, 5) array whose ``[i, j]`` is that C element; only ``[:nrow_b, :ncol_b]`` is
meaningful (the rest may hold garbage, even NaN). ``rowc, colc`` are PHOTO frame coordinates, in
which the centre of the first pixel is 0.5. The PSF is centred on the central pixel of the stamp.

Note: the IDL ``sdss_psf_recon`` (photoop) and pydl's copy index ``c`` the other way round,
i.e. they swap row and column in the polynomial; for a bilinear model that is equivalent to
evaluating this reconstruction at the transposed position. The effect is ~0.1% of the peak.

HDU6 holds per-band field calibration: ``gain`` (electrons/ADU), ``dark_variance`` (ADU^2 per
pixel: read noise plus dark current), ``sky``/``skysig`` (ADU per pixel), ``psf_width`` (arcsec), ...

Negative wings: the KL reconstruction is a sum of signed eigen-images, so the PSF has small negative
pixels (on field 2583-2-136, ~300 of the 51 x 51 in every band, the most negative ~0.1% of the peak,
together ~1% of the total). :meth:`KLPsf.at` clips them to zero by default, logs the clipped fraction
at INFO level and records it in the returned :class:`PSFImage`'s ``meta`` (``negative="keep"`` gives
PHOTO's raw values, as photoop's ``sdss_psf_recon`` does).

Bad files (not FITS, truncated, missing HDUs or columns, garbage coefficients) raise
:class:`~starmodels.io.fits.FileFormatError` or :class:`~starmodels.io.fits.ExtensionNotFoundError`
naming the file.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from astropy.io import fits

from starmodels.io.fits_open import FileFormatError, get_hdu, hdu_data, open_fits

log = logging.getLogger(__name__)

BANDS = "ugriz"
RC_SCALE = 1e-3  # PHOTO's scale of (rowc, colc) in the polynomial
NEGATIVE = ("clip", "keep", "raise")
"""What :meth:`KLPsf.at` does with negative PSF pixels."""
MAX_CLIPPED = 0.1
"""Largest flux fraction :meth:`KLPsf.at` clips; more is not a wing but a broken PSF (or position)."""
FRAME_SHAPE = (1489, 2048)
"""Rows x columns of an SDSS corrected frame, in pixels (the frame the psField describes)."""
_WHAT = "SDSS psField file"


def _band_index(band: str) -> int:
    if band not in BANDS or len(band) != 1:
        raise ValueError(f"band must be one of {list(BANDS)}, got {band!r}")
    return BANDS.index(band)


def _table(hdul: fits.HDUList, index: int, path, required: tuple[str, ...], what: str = _WHAT):
    """Binary table HDU ``index`` and its lower-case -> actual column names, checked for ``required``."""
    h = get_hdu(hdul, index, path)
    if not isinstance(h, fits.BinTableHDU):
        raise FileFormatError(f"{path}: HDU {index} of the {what} is a {type(h).__name__}, not a binary "
                              "table (is this the right kind of file?)")
    t = hdu_data(hdul, index, path, what=what)
    names = {n.lower(): n for n in t.columns.names}
    missing = [c for c in required if c not in names]
    if missing:
        raise FileFormatError(f"{path}: HDU {index} of the {what} has no column(s) {', '.join(missing)} "
                              f"(columns present: {', '.join(t.columns.names)}); is this the right kind of "
                              "file?")
    if len(t) == 0:
        raise FileFormatError(f"{path}: HDU {index} of the {what} is an empty table")
    return t, names


def read_psfield_calibration(path: str | Path) -> dict[str, dict[str, float]]:
    """Per-band calibration from psField HDU6: ``{band: {"gain", "dark_variance", "sky", ...}}``.

    Units: ``gain`` electrons/ADU; ``dark_variance`` ADU^2/pixel; ``sky``, ``skysig``, ``skyerr``
    ADU/pixel; ``psf_width`` arcsec. ``status`` is the PSP status code of the band.

    Raises:
        FileNotFoundError: no such file.
        FileFormatError: not a readable FITS file, truncated, or HDU 6 is not the calibration table
            (no ``gain``/``dark_variance`` column, fewer than 5 bands).
        ExtensionNotFoundError: the file has no HDU 6.
    """
    with open_fits(path, what=_WHAT) as hdul:
        t, names = _table(hdul, 6, path, ("gain", "dark_variance"))
        out: dict[str, dict[str, float]] = {b: {} for b in BANDS}
        for key in ("gain", "dark_variance", "sky", "skysig", "skyerr", "psf_width", "status"):
            if key not in names:
                continue
            vals = np.asarray(t[names[key]][0]).ravel()
            if vals.size < len(BANDS) or vals.dtype.kind not in "biuf":
                raise FileFormatError(f"{path}: column {names[key]} of HDU 6 of the {_WHAT} holds "
                                      f"{vals.size} {vals.dtype} value(s), not one number per band {BANDS}")
            for i, b in enumerate(BANDS):
                out[b][key] = int(vals[i]) if key == "status" else float(vals[i])
    return out


class PSFImage(np.ndarray):
    """A PSF stamp (a plain 2-D float ndarray, ``[row, col]``) that carries ``meta``, a dict.

    Returned by :meth:`KLPsf.at`; ``meta`` holds ``source``, ``band``, ``row``, ``col`` (0-based
    frame pixel), ``negative`` (the mode used), ``n_negative`` (negative pixels before clipping),
    ``min_over_peak`` (most negative pixel / peak; 0 if none), ``clipped_fraction`` (flux removed by
    clipping as a fraction of the stamp's total before clipping; 0 unless clipped) and
    ``normalized``. Arithmetic on it gives plain ndarrays (without ``meta``).
    """

    meta: dict

    def __new__(cls, array, meta: dict | None = None):
        obj = np.asarray(array, dtype=float).view(cls)
        obj.meta = dict(meta or {})
        return obj

    def __array_finalize__(self, obj):
        self.meta = dict(getattr(obj, "meta", None) or {})

    def __array_wrap__(self, array, context=None, return_scalar=False):
        out = np.asarray(array).view(np.ndarray)
        return out[()] if return_scalar else out


@dataclasses.dataclass(frozen=True, eq=False)
class KLPsf:
    """The PHOTO KL-basis PSF of one band of one field.

    Attributes:
        band: ``u``, ``g``, ``r``, ``i`` or ``z``.
        eigen: (K, RNROW, RNCOL) eigen-images ``RROWS``.
        coeffs: K arrays ``C_k[:nrow_b, :ncol_b]`` (row power x column power).
        source: the psField path.
    """

    band: str
    eigen: np.ndarray
    coeffs: tuple[np.ndarray, ...]
    source: str = ""

    @classmethod
    def from_psfield(cls, path: str | Path, band: str) -> KLPsf:
        """Read the basis of ``band`` (HDU 1-5 = u, g, r, i, z) from a psField file.

        Raises:
            ValueError: ``band`` is not one of ``ugriz``.
            FileNotFoundError: no such file.
            FileFormatError: not a readable FITS file, truncated, or the band's HDU is not a KL-PSF
                table (missing columns, eigen-images of inconsistent or impossible size, polynomial
                orders outside 1-5, non-finite eigen-images or coefficients).
            ExtensionNotFoundError: the file has no HDU for the band.
        """
        b = _band_index(band)
        where = f"{path}: HDU {b + 1} ({band} band) of the {_WHAT}"
        with open_fits(path, what=_WHAT) as hdul:
            t, col = _table(hdul, b + 1, path, ("rrows", "rnrow", "rncol", "c", "nrow_b", "ncol_b"))
            rnrow, rncol = np.asarray(t[col["rnrow"]]), np.asarray(t[col["rncol"]])
            nrow, ncol = int(rnrow[0]), int(rncol[0])
            if np.any(rnrow != nrow) or np.any(rncol != ncol):
                raise FileFormatError(f"{where}: eigen-images differ in size (RNROW "
                                      f"{sorted(set(rnrow.tolist()))}, "
                                      f"RNCOL {sorted(set(rncol.tolist()))})")
            rows = [np.asarray(r, dtype=float).ravel() for r in t[col["rrows"]]]
            if nrow < 1 or ncol < 1 or min(r.size for r in rows) < nrow * ncol:
                raise FileFormatError(f"{where}: eigen-images of {nrow} x {ncol} pixels do not fit in RROWS "
                                      f"of {min(r.size for r in rows)} values")
            eigen = np.stack([r[: nrow * ncol].reshape(nrow, ncol) for r in rows])
            orders = [(int(nr), int(nc)) for nr, nc in zip(t[col["nrow_b"]], t[col["ncol_b"]], strict=True)]
            if any(not (1 <= nr <= 5 and 1 <= nc <= 5) for nr, nc in orders):
                raise FileFormatError(f"{where}: polynomial orders NROW_B x NCOL_B {orders} are outside 1-5")
            cs = [np.asarray(c, dtype=float).ravel() for c in t[col["c"]]]
            if any(c.size != 25 for c in cs):
                raise FileFormatError(f"{where}: column C holds {sorted({c.size for c in cs})} values per "
                                      "row, not a 5 x 5 coefficient array")
            coeffs = tuple(np.array(c.reshape(5, 5)[:nr, :nc])
                           for c, (nr, nc) in zip(cs, orders, strict=True))
        if not np.all(np.isfinite(eigen)):
            n_bad = int((~np.isfinite(eigen)).sum())
            raise FileFormatError(f"{where}: {n_bad} eigen-image pixel(s) are NaN/inf")
        if not all(np.all(np.isfinite(c)) for c in coeffs):
            raise FileFormatError(f"{where}: the used polynomial coefficients C[:NROW_B, :NCOL_B] are "
                                  "NaN/inf")
        return cls(band=band, eigen=eigen, coeffs=coeffs, source=str(path))

    @property
    def native_shape(self) -> tuple[int, int]:
        """Shape (rows, cols) of the PSF images PHOTO stored, in frame pixels."""
        return tuple(self.eigen.shape[1:])

    def weights(self, row: float, col: float) -> np.ndarray:
        """The K eigen-image weights at 0-based frame pixel (``row``, ``col``)."""
        r, c = (float(row) + 0.5) * RC_SCALE, (float(col) + 0.5) * RC_SCALE
        return np.array([np.sum(ck * np.outer(r ** np.arange(ck.shape[0]), c ** np.arange(ck.shape[1])))
                         for ck in self.coeffs])

    def raw(self, row: float, col: float) -> np.ndarray:
        """Un-normalised PHOTO PSF (RNROW x RNCOL) at 0-based frame pixel (``row``, ``col``)."""
        return np.tensordot(self.weights(row, col), self.eigen, axes=1)

    def at(self, row: float, col: float, size: int | None = None, normalize: bool = True, *,
           negative: str = "clip") -> PSFImage:
        """PSF image at 0-based frame pixel (``row``, ``col``), centred on its central pixel.

        Args:
            row, col: position in the full frame (pixel centres at integers; a cutout pixel
                ``(i, j)`` is at ``(i + origin[0], j + origin[1])``).
            size: odd side length to crop to (default the native RNROW, usually 51).
            normalize: scale so the returned image sums to 1 (PHOTO's raw sum is ~1.02).
            negative: what to do with negative pixels of the KL reconstruction (after cropping):
                ``"clip"`` (default) sets them to zero before normalising, logs how many and the flux
                fraction removed at INFO level and records both in ``meta`` (it refuses to remove more
                than :data:`MAX_CLIPPED` of the flux); ``"keep"`` returns
                PHOTO's raw values (as photoop's ``sdss_psf_recon``); ``"raise"`` refuses them.

        Returns:
            A :class:`PSFImage` (an ndarray, unit sum when ``normalize``) whose ``meta`` records the
            position, band, source and the negative-pixel statistics.

        Raises:
            ValueError: bad ``size`` or ``negative``; the PSF has a non-positive total or peak at
                this position; negative pixels with ``negative="raise"``; or, with ``"clip"``, negative
                pixels holding more than :data:`MAX_CLIPPED` of the total.
        """
        if negative not in NEGATIVE:
            raise ValueError(f"negative must be one of {NEGATIVE}, got {negative!r}")
        img = self.raw(row, col)
        if size is not None:
            size = int(size)
            n0, n1 = img.shape
            if size % 2 == 0 or size < 1 or size > min(n0, n1):
                raise ValueError(f"size must be odd and at most {min(n0, n1)}, got {size}")
            r0, c0 = n0 // 2 - size // 2, n1 // 2 - size // 2
            img = img[r0:r0 + size, c0:c0 + size]
        total, peak = float(img.sum()), float(img.max())
        src = self.source or "psField"
        here = f"{src}: the {self.band}-band PSF at frame pixel (row {row:g}, col {col:g})"
        if not (np.isfinite(total) and total > 0 and peak > 0):
            raise ValueError(f"{here} has total {total:g} and peak {peak:g}: not a PSF (is the position "
                             f"inside the {FRAME_SHAPE[0]} x {FRAME_SHAPE[1]} frame?)")
        neg = img < 0
        n_neg, low = int(neg.sum()), float(img.min())
        frac = float(-img[neg].sum() / total)
        meta = {"source": self.source, "band": self.band, "row": float(row), "col": float(col),
                "negative": negative, "n_negative": n_neg, "min_over_peak": min(low, 0.0) / peak,
                "clipped_fraction": 0.0, "normalized": bool(normalize)}
        if n_neg and negative == "raise":
            raise ValueError(f"{here} has {n_neg} negative pixel(s), the most negative {low / peak:.3g} of "
                             f"the peak ({frac:.3%} of the total); pass negative='clip' or 'keep'")
        if n_neg and negative == "clip":
            if frac > MAX_CLIPPED:
                inside = all(-0.5 <= v <= n - 0.5 for v, n in zip((row, col), FRAME_SHAPE, strict=True))
                hint = "" if inside else (f"; the position is outside the {FRAME_SHAPE[0]} x "
                                          f"{FRAME_SHAPE[1]} frame, where the polynomial PSF model does not "
                                          "hold")
                raise ValueError(f"{here} has {n_neg} negative pixel(s) holding {frac:.3%} of the total (the "
                                 f"most negative {low / peak:.3g} of the peak): more than the "
                                 f"{MAX_CLIPPED:.0%} that clipping may remove{hint}")
            img = np.maximum(img, 0.0)
            meta["clipped_fraction"] = frac
            log.info("%s: clipped %d negative pixel(s) to zero (the most negative %.3g of the peak; %.3f%% "
                     "of the PSF's total flux)", here, n_neg, low / peak, 100 * frac)
        if normalize:
            img = img / img.sum()
        return PSFImage(img, meta)

    def at_center_of(self, obs, size: int | None = None, normalize: bool = True, *,
                     negative: str = "clip") -> PSFImage:
        """PSF at the centre of an :class:`~starmodels.io.Observation` cut from the frame.

        Uses ``obs.meta["origin"]`` (full-frame position of the cutout's pixel ``[0, 0]``); the other
        arguments are those of :meth:`at`.
        """
        oy, ox = obs.meta.get("origin", (0, 0))
        ny, nx = obs.shape
        return self.at(oy + (ny - 1) / 2, ox + (nx - 1) / 2, size=size, normalize=normalize,
                       negative=negative)


def sdss_psf(psfield: str | Path, band: str, row: float, col: float, size: int | None = None,
             normalize: bool = True, *, negative: str = "clip") -> PSFImage:
    """SDSS PSF of ``band`` at 0-based frame pixel (``row``, ``col``); see :meth:`KLPsf.at`.

    Raises the errors of :meth:`KLPsf.from_psfield` (unreadable or malformed psField file) and of
    :meth:`KLPsf.at`.
    """
    return KLPsf.from_psfield(psfield, band).at(row, col, size=size, normalize=normalize, negative=negative)
