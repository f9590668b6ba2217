"""Optics from a PSF image: a survey PSF, a lab PSF or one rendered by dLux, shifted to each source.

:class:`ImagePSF` stands wherever :class:`~starmodels.optics.TelescopeOptics`
does (same ``psfs(p, positions)`` contract and grid attributes), so
seeing-limited ground-based data and toy PSFs use the same forward model.
"""

from __future__ import annotations

import logging
import math
import numbers

import dLux.utils as dlu
import jax
import jax.numpy as jnp
import numpy as np

from starmodels.component import Component

log = logging.getLogger(__name__)

SHIFTS = ("fourier", "linear")
NEGATIVE = ("raise", "clip")
"""What :class:`ImagePSF` does with negative PSF pixels (``negative=``)."""


class PSFError(ValueError):
    """A PSF image cannot be used; the message lists every problem with it."""


def _psf_problems(psf, negative: str) -> tuple[np.ndarray | None, list[str]]:
    """The PSF as a float array (None if not real numbers) and every problem with it, as sentences."""
    raw = np.asarray(psf)
    if raw.dtype.kind == "c":
        return None, [f"PSF is complex-valued (dtype {raw.dtype}); pass a real intensity image, e.g. "
                      "np.abs(field)**2 for a complex amplitude"]
    if raw.dtype.kind not in "biuf":
        return None, [f"PSF must hold real numbers, got dtype {raw.dtype}"]
    arr = raw.astype(float)
    out = []
    if arr.ndim != 2:
        out.append(f"PSF must be a square 2-D image, got a {arr.ndim}-D array of shape {arr.shape}")
    elif arr.shape[0] != arr.shape[1]:
        out.append(f"PSF must be a square 2-D image, got shape {arr.shape}")
    if arr.size == 0:
        return arr, [*out, f"PSF is empty (shape {arr.shape})"]
    finite = np.isfinite(arr)
    if not finite.all():
        first = tuple(int(i) for i in np.argwhere(~finite)[0])
        return arr, [*out, f"PSF has {int((~finite).sum())} non-finite (NaN/inf) pixel(s), the first at "
                           f"index {first}"]
    if not arr.any():
        return arr, [*out, "PSF is all zeros"]
    total, peak, neg = float(arr.sum()), float(arr.max()), arr < 0
    if neg.any() and negative != "clip":
        rel = (f"the most negative {arr.min() / peak:.3g} of the peak" if peak > 0
               else f"the most negative {arr.min():.3g}, and no pixel is positive")
        share = f", together {-arr[neg].sum() / total:.3%} of the total" if total > 0 else ""
        out.append(f"PSF has {int(neg.sum())} negative pixel(s) ({rel}{share}); pass negative='clip' to clip "
                   "them to zero (the flux fraction removed is kept in ImagePSF.clipped_fraction), or fix "
                   "the PSF")
    if not total > 0:
        out.append(f"PSF must have a positive total, got {total:g}")
    return arr, out


def triangle_psf(half_width: int = 8) -> np.ndarray:
    """Separable triangular PSF: the outer product of ``1, 2, ..., half_width, ..., 2, 1``, sum 1.

    ``half_width=8`` gives the 15 x 15 PSF of the Penn State VI lab (peak 1/64).
    """
    if half_width < 1:
        raise ValueError(f"half_width must be >= 1, got {half_width}")
    m = np.concatenate([np.arange(1, half_width + 1), np.arange(half_width - 1, 0, -1)]).astype(float)
    psf = np.outer(m, m)
    return psf / psf.sum()


def _fourier_shift(img: jnp.ndarray, dy, dx) -> jnp.ndarray:
    """Shift by (dy, dx) sub-pixels with a Fourier phase ramp (periodic; keeps the total exactly)."""
    ky = jnp.fft.fftfreq(img.shape[0])[:, None]
    kx = jnp.fft.rfftfreq(img.shape[1])[None, :]
    ramp = jnp.exp(-2j * jnp.pi * (ky * dy + kx * dx))
    return jnp.fft.irfft2(jnp.fft.rfft2(img) * ramp, s=img.shape)


def _linear_shift(img: jnp.ndarray, dy, dx) -> jnp.ndarray:
    """Shift by (dy, dx) sub-pixels with bilinear interpolation (light leaving the grid is lost)."""
    yy, xx = jnp.indices(img.shape, dtype=float)
    return jax.scipy.ndimage.map_coordinates(img, [yy - dy, xx - dx], order=1, cval=0.0)


class ImagePSF(Component):
    """A fixed PSF image, normalised to unit sum, placed at each source position.

    ``psf`` is a stamp (m x m) sampled on the detector's sub-pixel grid
    (sub-pixels of ``pixel_scale / oversample`` arcsec), centred on its
    centre (pixel ``(m - 1) / 2``). The image is ``npixels`` detector pixels
    across (default: the stamp's size); the stamp is placed on a canvas padded
    by its own size, so light never wraps around the edges and light moved off
    the image is lost, as on a detector. Sources at ``(x, y)`` arcsec from the
    image centre move it by ``x`` along columns and ``y`` along rows, as
    dLux does. ``shift="fourier"`` (default) is exact for a band-limited PSF;
    ``"linear"`` avoids ringing on sharp, undersampled PSFs. No free parameters.

    Args:
        psf: the (m, m) stamp, any positive scale (it is normalised); real, finite, not all zero,
            with a positive total.
        pixel_scale: detector pixel size in arcsec.
        oversample: sub-pixels per detector pixel along each axis.
        shift: ``"fourier"`` or ``"linear"`` sub-pixel shifts.
        npixels: image side in detector pixels (default the stamp's).
        negative: ``"raise"`` (default) refuses a PSF with negative pixels; ``"clip"`` sets them to
            zero, logs it at INFO level and records the flux fraction removed (of the total before
            clipping) in :attr:`clipped_fraction`. Nothing is ever clipped silently.

    Attributes:
        clipped_fraction: flux removed by ``negative="clip"``, as a fraction of the PSF's total
            before clipping (0.0 when nothing was clipped).

    Raises:
        PSFError: (a ValueError) listing every problem: not a square 2-D real array, non-finite
            pixels, all zeros, negative pixels (unless clipped), a non-positive total, bad options.
    """

    psf: jnp.ndarray
    psf_npixels: int
    pixel_scale: float
    oversample: int
    shift: str
    clipped_fraction: float
    role = "optics"
    param_names = ()

    def __init__(self, psf, *, pixel_scale: float, oversample: int = 1, shift: str = "fourier",
                 npixels: int | None = None, negative: str = "raise"):
        super().__init__({})
        arr, problems = _psf_problems(psf, negative)
        def _int(v):
            return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1

        if not (isinstance(pixel_scale, numbers.Real) and not isinstance(pixel_scale, bool)
                and math.isfinite(pixel_scale) and pixel_scale > 0):
            problems.append(f"pixel_scale must be a finite number > 0 (arcsec), got {pixel_scale!r}")
        if not _int(oversample) or (npixels is not None and not _int(npixels)):
            problems.append(f"oversample and npixels must be integers >= 1, got {oversample!r}, {npixels!r}")
        square = arr is not None and arr.ndim == 2 and arr.shape[0] == arr.shape[1]
        if square and npixels is None and _int(oversample) and arr.shape[0] % oversample:
            problems.append(f"PSF size {arr.shape[0]} is not a multiple of oversample {oversample}")
        if shift not in SHIFTS:
            problems.append(f"shift must be one of {SHIFTS}, got {shift!r}")
        if negative not in NEGATIVE:
            problems.append(f"negative must be one of {NEGATIVE}, got {negative!r}")
        if problems:
            raise PSFError("ImagePSF: " + "; ".join(problems))
        neg = arr < 0
        self.clipped_fraction = float(-arr[neg].sum() / arr.sum()) if neg.any() else 0.0
        if neg.any():
            log.info("ImagePSF: clipped %d negative pixel(s) to zero (the most negative %.3g of the peak; "
                     "%.3f%% of the total flux)", int(neg.sum()), arr.min() / arr.max(),
                     100 * self.clipped_fraction)
            arr = np.maximum(arr, 0.0)
        self.psf = jnp.asarray(arr / arr.sum())
        self.psf_npixels = int(npixels) if npixels is not None else arr.shape[0] // oversample
        self.pixel_scale, self.oversample, self.shift = float(pixel_scale), int(oversample), shift

    def _layout(self):
        """Canvas size, crop start, stamp offset and the stamp-to-image centre shift (sub-pixels)."""
        n, m = self.psf_npixels * self.oversample, self.psf.shape[0]
        canvas = n + m + (m % 2 != n % 2) + (m % 2)
        start, offset = (canvas - n) // 2, (canvas - m) // 2
        return canvas, start, offset, (start + (n - 1) / 2) - (offset + (m - 1) / 2)

    def psfs(self, p: dict, positions: jnp.ndarray) -> jnp.ndarray:
        """Unit-flux PSFs (n, N*os, N*os) at ``positions`` (n, 2) radians (x, y)."""
        canvas, start, offset, centre = self._layout()
        n, m = self.psf_npixels * self.oversample, self.psf.shape[0]
        padded = jnp.zeros((canvas, canvas)).at[offset:offset + m, offset:offset + m].set(self.psf)
        offsets = dlu.rad2arcsec(positions) / (self.pixel_scale / self.oversample) + centre
        move = _fourier_shift if self.shift == "fourier" else _linear_shift
        shifted = jax.vmap(lambda o: move(padded, o[1], o[0]))(offsets)
        return shifted[:, start:start + n, start:start + n]
