"""PSF images: checks, re-centring, resampling to another pixel scale, and parametric PSFs.

A PSF image has odd sides and is centred on its middle pixel ``[(h - 1) / 2, (w - 1) / 2]``; its values
are the fraction of a point source's flux falling in each pixel (it sums to 1). Arrays are
``[row, col]``. Parametric PSFs (:func:`gaussian_psf`, :func:`moffat_psf`) are pixel-integrated,
differentiable in JAX in their width, ellipticity and angle (so those can be NumPyro sample sites);
widths are in pixels, angles in radians from +x (columns) towards +y (rows).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from starmodels.sky.checks import is_int, is_number, shape2
from starmodels.sky.reproject import _build_gather, default_oversample

# ----------------------------------------------------------------------------------------------------
# PSF images
# ----------------------------------------------------------------------------------------------------

def _psf_array(psf) -> np.ndarray:
    """``psf`` as a finite 2-D float64 array with a positive sum, or a ValueError naming the problem."""
    a = np.asarray(psf, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"PSF must be a 2-D image, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"PSF is empty, shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"PSF has NaN ({int(np.isnan(a).sum())} of {a.size} pixels)")
    if np.isinf(a).any():
        raise ValueError(f"PSF has infinite values ({int(np.isinf(a).sum())} of {a.size} pixels)")
    total = a.sum()
    if total == 0:
        raise ValueError("PSF sums to 0")
    if total < 0:
        raise ValueError(f"PSF sums to {total:g}; it must sum to a positive number")
    return a


def normalized_psf(psf, image_shape: tuple[int, int] | None = None, recenter: bool = False) -> np.ndarray:
    """Check a PSF image and return it divided by its sum (host side, numpy float64).

    Checks: 2-D, no NaN or infinite values, a positive sum, odd sides (the centre on the middle
    pixel), and, if ``image_shape`` is given, no larger than that image on either side.

    Parameters
    ----------
    psf:
        ``(h, w)`` PSF image, any flux scale.
    image_shape:
        ``(H, W)`` of the image it will be convolved with, optional.
    recenter:
        Put the PSF on an odd grid with its centroid at the centre first (:func:`recenter_psf`);
        otherwise even sides are an error.

    Returns
    -------
    ``(h, w)`` array summing to 1 (fraction of the flux per pixel).
    """
    a = _psf_array(psf)
    if recenter:
        a, _ = recenter_psf(a)
    elif a.shape[0] % 2 == 0 or a.shape[1] % 2 == 0:
        raise ValueError(f"PSF {a.shape[0]}x{a.shape[1]} has an even side, so its centre falls between "
                         "pixels; use recenter_psf (or recenter=True) to centre it on an odd grid")
    if image_shape is not None:
        hi, wi = shape2("image_shape", image_shape)
        if a.shape[0] > hi or a.shape[1] > wi:
            raise ValueError(f"PSF {a.shape[0]}x{a.shape[1]} is larger than the image {hi}x{wi}; crop it "
                             f"to at most {hi - 1 + hi % 2}x{wi - 1 + wi % 2} around its centre")
    return a / a.sum()


def _centroid(a: np.ndarray) -> np.ndarray:
    y, x = np.indices(a.shape)
    t = a.sum()
    return np.array([(a * y).sum() / t, (a * x).sum() / t])


def _peak(a: np.ndarray) -> np.ndarray:
    """Position (row, col) of the maximum, refined by a parabola through it and its two neighbours."""
    i, j = np.unravel_index(np.argmax(a), a.shape)
    pos = np.array([i, j], dtype=float)
    for axis, k in enumerate((i, j)):
        if 0 < k < a.shape[axis] - 1:
            line = a[:, j] if axis == 0 else a[i, :]
            lo, mid, hi = line[k - 1], line[k], line[k + 1]
            denom = lo - 2 * mid + hi
            if denom < 0:
                pos[axis] += float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
    return pos


def _shift_into(a: np.ndarray, shift, out_shape, subpixel: bool) -> np.ndarray:
    """``a`` moved by ``shift`` (rows, cols) pixels and cut to ``out_shape``, centre to centre."""
    h, w = a.shape
    ho, wo = out_shape
    off = ((ho - h) // 2, (wo - w) // 2)  # output index = input index + off (+ shift)
    p = int(np.ceil(np.max(np.abs(shift)))) + 1 + max(abs(ho - h), abs(wo - w))
    big = np.pad(a, ((p, p + (h + 2 * p + 1) % 2), (p, p + (w + 2 * p + 1) % 2)))  # odd sides
    if subpixel:
        ky = np.fft.fftfreq(big.shape[0])[:, None]
        kx = np.fft.fftfreq(big.shape[1])[None, :]
        phase = np.exp(-2j * np.pi * (ky * shift[0] + kx * shift[1]))
        moved = np.fft.ifft2(np.fft.fft2(big) * phase).real
    else:
        moved = np.roll(big, (int(shift[0]), int(shift[1])), axis=(0, 1))
    return moved[p - off[0]: p - off[0] + ho, p - off[1]: p - off[1] + wo]


def recenter_psf(psf, method: str = "centroid", subpixel: bool = True,
                 size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """Move a PSF so its centre (centroid or peak) is on the middle pixel of an odd grid (host side).

    Parameters
    ----------
    psf:
        ``(h, w)`` PSF image (any sides; finite, positive sum).
    method:
        ``"centroid"``: the flux-weighted mean position of the whole image (sensitive to noise and
        background in the wings: subtract or crop those first). ``"peak"``: the brightest pixel,
        refined to sub-pixel precision by a parabola through it and its neighbours on each axis.
    subpixel:
        ``True``: shift by the exact (fractional) offset with a Fourier phase ramp, on a canvas
        padded so nothing wraps round; the centre then lands on the middle pixel (within 0.01 px for
        the centroid, which is iterated). A Fourier shift rings (small negative values) if the PSF is
        undersampled. ``False``: shift by the offset rounded to whole pixels (no resampling); the
        returned shift then tells how far it moved, and the centre stays within half a pixel.
    size:
        Output ``(rows, cols)``, odd; default the input sides rounded up to odd. Flux shifted past the
        output's edges is lost (the result is not renormalised; use :func:`normalized_psf`).

    Returns
    -------
    ``(centred, (dy, dx))``: the centred ``size`` image and the shift applied, in pixels
    (rows, cols; positive moves the PSF to larger indices).
    """
    a = _psf_array(psf)
    if method not in ("centroid", "peak"):
        raise ValueError(f"recenter_psf method must be 'centroid' or 'peak', got {method!r}")
    if size is None:
        size = (a.shape[0] | 1, a.shape[1] | 1)
    size = shape2("size", size)
    if size[0] % 2 == 0 or size[1] % 2 == 0:
        raise ValueError(f"recenter_psf size must have odd sides, got {size}")
    measure = _centroid if method == "centroid" else _peak
    centre = (np.array(size) - 1) / 2.0
    off = np.array([(size[0] - a.shape[0]) // 2, (size[1] - a.shape[1]) // 2])
    shift = centre - (measure(a) + off)
    if not subpixel:
        shift = np.round(shift)
        return _shift_into(a, shift, size, False), (float(shift[0]), float(shift[1]))
    out = _shift_into(a, shift, size, True)
    for _ in range(5):  # the Fourier shift moves the centroid of the cropped image almost exactly
        residual = centre - measure(out)
        if np.max(np.abs(residual)) < 1e-3:
            break
        shift = shift + residual
        out = _shift_into(a, shift, size, True)
    return out, (float(shift[0]), float(shift[1]))


def resample_psf(psf, from_scale: float, to_scale: float, size: int | tuple[int, int] | None = None,
                 oversample: int | None = None) -> np.ndarray:
    """Resample a centred PSF image from one pixel scale to another, conserving flux (host side).

    The PSF's surface brightness is interpolated bilinearly and integrated over each new pixel
    (``m x m`` sub-points, ``m`` = ``oversample``, default :func:`default_oversample` of
    ``to_scale / from_scale``), the same machinery as :class:`PixelMap`; the centre of the middle
    input pixel maps onto the centre of the middle output pixel.

    The bilinear interpolant treats pixel values as samples, so the result is broadened by a
    variance of 1/4 input pixel^2 per axis (1/6 from the interpolation kernel, 1/12 from the input
    pixels' own box): negligible for a well-sampled PSF (1 % of the variance for sigma = 5 input
    pixels), noticeable for an undersampled one.

    Parameters
    ----------
    psf:
        ``(h, w)`` PSF image with odd sides, centred (see :func:`recenter_psf`).
    from_scale, to_scale:
        Pixel scales of the input and of the output, arcsec per pixel (or any common unit).
    size:
        Output side(s), odd; default the smallest odd size covering the input's field.
    oversample:
        Sub-points per side of an output pixel.

    Returns
    -------
    ``(size_y, size_x)`` float64 array summing to 1 (flux outside it is dropped before normalising).
    """
    a = normalized_psf(psf)
    for name, s in (("from_scale", from_scale), ("to_scale", to_scale)):
        if not is_number(s) or not np.isfinite(s) or s <= 0:
            raise ValueError(f"resample_psf {name} must be a finite number > 0 (arcsec/pixel), got {s!r}")
    ratio = float(to_scale) / float(from_scale)  # input pixels per output pixel
    if size is None:
        size = tuple(int(math.ceil(n / ratio - 1e-9)) | 1 for n in a.shape)
    elif is_int(size):
        size = (int(size), int(size))
    size = shape2("size", size)
    if size[0] % 2 == 0 or size[1] % 2 == 0:
        raise ValueError(f"resample_psf size must have odd sides, got {size}")
    if oversample is None:
        oversample = default_oversample(ratio)
    elif not is_int(oversample) or oversample < 1:
        raise ValueError(f"oversample must be an integer >= 1, got {oversample!r}")
    cin = (np.array(a.shape) - 1) / 2.0
    cout = (np.array(size) - 1) / 2.0

    def to_input(x, y):
        return cin[1] + (x - cout[1]) * ratio, cin[0] + (y - cout[0]) * ratio

    index, weight, _ = _build_gather(to_input, a.shape, size, int(oversample), ratio**2)
    out = (weight * a.ravel()[index]).sum(axis=1).reshape(size)
    return out / out.sum()


# ----------------------------------------------------------------------------------------------------
# parametric PSFs (JAX)
# ----------------------------------------------------------------------------------------------------

def _check_value(name: str, value, low: float, high: float = np.inf, low_open: bool = True):
    """Range check of a concrete parameter; traced values (inside jit/grad) are not checked."""
    try:
        v = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return
    ok = np.isfinite(v) and (v > low if low_open else v >= low) and v < high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + (f" and < {high:g}" if np.isfinite(high) else "")
        raise ValueError(f"{name} must be a finite number {bound}, got {v}")


def _fine_grid(size: int, oversample: int):
    """Sub-pixel centres (pixels from the stamp centre), shape ``(size * m,)``, and the check of both."""
    if not is_int(size) or size < 1 or size % 2 == 0:
        raise ValueError(f"PSF size must be an odd integer >= 1, got {size!r}")
    if not is_int(oversample) or oversample < 1:
        raise ValueError(f"PSF oversample must be an integer >= 1, got {oversample!r}")
    n = size * oversample
    return (np.arange(n) + 0.5) / oversample - 0.5 - (size - 1) / 2.0


def _elliptical_r2(size, oversample, scale, ellipticity, angle):
    """``(q u^2 + v^2 / q) / scale^2`` on the fine grid: u along the major axis, q = 1 - ellipticity."""
    c = jnp.asarray(_fine_grid(size, oversample))
    y, x = c[:, None], c[None, :]
    q = 1.0 - ellipticity
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    uu = cos * x + sin * y
    vv = -sin * x + cos * y
    return (q * uu**2 + vv**2 / q) / scale**2


def _integrate(fine, size, oversample):
    img = fine.reshape(size, oversample, size, oversample).sum(axis=(1, 3))
    return img / jnp.sum(img)


def gaussian_psf(size: int, sigma, ellipticity=0.0, angle=0.0, oversample: int = 5):
    """An elliptical Gaussian PSF integrated over pixels, centred on the middle pixel, summing to 1 (JAX).

    Differentiable in ``sigma``, ``ellipticity`` and ``angle`` (they may be NumPyro sample sites);
    ``size`` and ``oversample`` are static.

    Parameters
    ----------
    size:
        Side of the square stamp, pixels, odd (take at least ``8 sigma / sqrt(1 - ellipticity)``
        so the truncated wings hold < 1e-4 of the flux; the stamp is renormalised to sum 1).
    sigma:
        Size, pixels: the geometric mean of the standard deviations along the major and minor axes,
        ``sigma = sqrt(sigma_major * sigma_minor)`` (so the area of the PSF does not change with
        the ellipticity). ``> 0``.
    ellipticity:
        ``e = 1 - q`` with the axis ratio ``q = sigma_minor / sigma_major``; ``0 <= e < 1``. Then
        ``sigma_major = sigma / sqrt(q)`` and ``sigma_minor = sigma * sqrt(q)``.
    angle:
        Direction of the major axis, radians, counted from the +x (column) axis towards the +y (row)
        axis.
    oversample:
        Sub-points per side of a pixel for the pixel integration (midpoint rule).

    Returns
    -------
    ``(size, size)`` image. Its second moments about the centre are the covariance
    ``R(angle) diag(sigma_major^2, sigma_minor^2) R(angle)^T`` plus the pixel box's variance,
    ``(m^2 - 1) / (12 m^2)`` pixel^2 on each axis for ``m = oversample`` (1/12 as ``m`` grows).
    """
    _check_value("sigma", sigma, 0.0)
    _check_value("ellipticity", ellipticity, 0.0, 1.0, low_open=False)
    r2 = _elliptical_r2(size, oversample, sigma, ellipticity, angle)
    return _integrate(jnp.exp(-0.5 * r2), size, oversample)


def moffat_psf(size: int, fwhm, beta, ellipticity=0.0, angle=0.0, oversample: int = 5):
    """An elliptical Moffat PSF ``(1 + r^2 / alpha^2)^(-beta)`` integrated over pixels, summing to 1 (JAX).

    Differentiable in ``fwhm``, ``beta``, ``ellipticity`` and ``angle``; ``size`` and ``oversample``
    are static. ``alpha = fwhm / (2 sqrt(2^(1 / beta) - 1))``.

    Parameters
    ----------
    size:
        Side of the square stamp, pixels, odd. Moffat wings are wide: the stamp is renormalised to
        sum 1, so flux beyond it is dropped.
    fwhm:
        Full width at half maximum, pixels, as the geometric mean over the major and minor axes
        (same convention as ``sigma`` in :func:`gaussian_psf`). ``> 0``.
    beta:
        Power-law index, ``> 1`` (finite flux); the second moments are finite for ``beta > 2``:
        ``alpha^2 / (2 (beta - 2))`` per axis for a round profile.
    ellipticity, angle, oversample:
        As in :func:`gaussian_psf` (``e = 1 - q``; angle in radians from +x towards +y).
    """
    _check_value("fwhm", fwhm, 0.0)
    _check_value("beta", beta, 1.0)
    _check_value("ellipticity", ellipticity, 0.0, 1.0, low_open=False)
    alpha = fwhm / (2.0 * jnp.sqrt(2.0 ** (1.0 / beta) - 1.0))
    r2 = _elliptical_r2(size, oversample, alpha, ellipticity, angle)
    return _integrate((1.0 + r2) ** (-beta), size, oversample)
