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
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from astropy.io import fits

BANDS = "ugriz"
RC_SCALE = 1e-3  # PHOTO's scale of (rowc, colc) in the polynomial


def _band_index(band: str) -> int:
    if band not in BANDS or len(band) != 1:
        raise ValueError(f"band must be one of {list(BANDS)}, got {band!r}")
    return BANDS.index(band)


def read_psfield_calibration(path: str | Path) -> dict[str, dict[str, float]]:
    """Per-band calibration from psField HDU6: ``{band: {"gain", "dark_variance", "sky", ...}}``.

    Units: ``gain`` electrons/ADU; ``dark_variance`` ADU^2/pixel; ``sky``, ``skysig``, ``skyerr``
    ADU/pixel; ``psf_width`` arcsec. ``status`` is the PSP status code of the band.
    """
    with fits.open(path, memmap=False) as hdul:
        t = hdul[6].data
        names = {n.lower(): n for n in t.columns.names}
        out: dict[str, dict[str, float]] = {b: {} for b in BANDS}
        for key in ("gain", "dark_variance", "sky", "skysig", "skyerr", "psf_width", "status"):
            if key not in names:
                continue
            vals = np.asarray(t[names[key]][0]).ravel()
            for i, b in enumerate(BANDS):
                out[b][key] = int(vals[i]) if key == "status" else float(vals[i])
    return out


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
        """Read the basis of ``band`` (HDU 1-5 = u, g, r, i, z) from a psField file."""
        b = _band_index(band)
        with fits.open(path, memmap=False) as hdul:
            t = hdul[b + 1].data
            col = {n.lower(): n for n in t.columns.names}
            nrow, ncol = int(t[col["rnrow"]][0]), int(t[col["rncol"]][0])
            if np.any(t[col["rnrow"]] != nrow) or np.any(t[col["rncol"]] != ncol):
                raise ValueError(f"{path}: eigen-images of band {band} differ in size")
            eigen = np.stack([np.asarray(r, dtype=float)[: nrow * ncol].reshape(nrow, ncol)
                              for r in t[col["rrows"]]])
            coeffs = tuple(
                np.array(np.asarray(c, dtype=float).reshape(5, 5)[: int(nr), : int(nc)])
                for c, nr, nc in zip(t[col["c"]], t[col["nrow_b"]], t[col["ncol_b"]], strict=True)
            )
        return cls(band=band, eigen=eigen, coeffs=coeffs, source=str(path))

    @property
    def native_shape(self) -> tuple[int, int]:
        return tuple(self.eigen.shape[1:])

    def weights(self, row: float, col: float) -> np.ndarray:
        """The K eigen-image weights at 0-based frame pixel (``row``, ``col``)."""
        r, c = (float(row) + 0.5) * RC_SCALE, (float(col) + 0.5) * RC_SCALE
        return np.array([np.sum(ck * np.outer(r ** np.arange(ck.shape[0]), c ** np.arange(ck.shape[1])))
                         for ck in self.coeffs])

    def raw(self, row: float, col: float) -> np.ndarray:
        """Un-normalised PHOTO PSF (RNROW x RNCOL) at 0-based frame pixel (``row``, ``col``)."""
        return np.tensordot(self.weights(row, col), self.eigen, axes=1)

    def at(self, row: float, col: float, size: int | None = None, normalize: bool = True) -> np.ndarray:
        """PSF image at 0-based frame pixel (``row``, ``col``), centred on its central pixel.

        Args:
            row, col: position in the full frame (pixel centres at integers; a cutout pixel
                ``(i, j)`` is at ``(i + origin[0], j + origin[1])``).
            size: odd side length to crop to (default the native RNROW, usually 51).
            normalize: scale so the returned image sums to 1 (PHOTO's raw sum is ~1.02).
        """
        img = self.raw(row, col)
        if size is not None:
            size = int(size)
            n0, n1 = img.shape
            if size % 2 == 0 or size < 1 or size > min(n0, n1):
                raise ValueError(f"size must be odd and at most {min(n0, n1)}, got {size}")
            r0, c0 = n0 // 2 - size // 2, n1 // 2 - size // 2
            img = img[r0:r0 + size, c0:c0 + size]
        if normalize:
            img = img / img.sum()
        return img

    def at_center_of(self, obs, size: int | None = None, normalize: bool = True) -> np.ndarray:
        """PSF at the centre of an :class:`~starmodels.io.Observation` cut from the frame.

        Uses ``obs.meta["origin"]`` (full-frame position of the cutout's pixel ``[0, 0]``).
        """
        oy, ox = obs.meta.get("origin", (0, 0))
        ny, nx = obs.shape
        return self.at(oy + (ny - 1) / 2, ox + (nx - 1) / 2, size=size, normalize=normalize)


def sdss_psf(psfield: str | Path, band: str, row: float, col: float, size: int | None = None,
             normalize: bool = True) -> np.ndarray:
    """SDSS PSF of ``band`` at 0-based frame pixel (``row``, ``col``); see :meth:`KLPsf.at`."""
    return KLPsf.from_psfield(psfield, band).at(row, col, size=size, normalize=normalize)
