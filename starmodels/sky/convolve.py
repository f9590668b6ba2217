"""Linear (zero-padded, not circular) convolution of images with a PSF by FFT, in JAX.

:func:`fft_convolve` convolves once; :class:`FFTConvolver` keeps the kernel's transform for a fixed image
shape so the same PSF is applied at every step for the price of two FFTs. Arrays are ``[row, col]``;
kernels have odd sides and are centred on their middle pixel. Results have the image's shape (like
``scipy.signal.fftconvolve(..., mode="same")``); the padding is at least the kernel half-width on every
side, so nothing wraps round.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

from starmodels.sky.checks import is_int, shape2

# ----------------------------------------------------------------------------------------------------
# FFT convolution
# ----------------------------------------------------------------------------------------------------

def _fast_len(n: int) -> int:
    return int(scipy.fft.next_fast_len(int(n), real=True))


def _kernel_shape(kernel_shape) -> tuple[int, int]:
    if len(kernel_shape) != 2:
        raise ValueError(f"kernel must be 2-D (h, w), got shape {tuple(kernel_shape)}")
    h, w = int(kernel_shape[0]), int(kernel_shape[1])
    if h < 1 or w < 1 or h % 2 == 0 or w % 2 == 0:
        raise ValueError(f"kernel must have odd sides (centred on its middle pixel), got {h}x{w}; "
                         "use recenter_psf to put a PSF on an odd grid")
    return h, w


def _fft_geometry(image_shape, kernel_shape, pad) -> tuple[int, int]:
    """FFT shape for linear convolution of an image ``(H, W)`` by a kernel ``(h, w)``."""
    if len(image_shape) < 2 or min(image_shape[-2:]) < 1:
        raise ValueError(f"image must have shape (..., H, W) with H, W >= 1, got {tuple(image_shape)}")
    hi, wi = int(image_shape[-2]), int(image_shape[-1])
    h, w = _kernel_shape(kernel_shape)
    half = (h // 2, w // 2)
    if pad is None:
        pad = half
    elif is_int(pad):
        pad = (int(pad), int(pad))
    elif isinstance(pad, tuple | list) and len(pad) == 2 and all(is_int(p) for p in pad):
        pad = (int(pad[0]), int(pad[1]))
    else:
        raise ValueError(f"pad must be None, an integer or a pair of integers (rows, cols), got {pad!r}")
    if pad[0] < half[0] or pad[1] < half[1]:
        raise ValueError(f"pad {pad} is smaller than the kernel half-width {half}: the convolution "
                         "would wrap round the image edges")
    return _fast_len(max(hi + pad[0], h)), _fast_len(max(wi + pad[1], w))


def _kernel_ft(kernel, fft_shape):
    """rFFT of a centred odd kernel placed with its centre at ``[0, 0]`` of the FFT grid (JAX)."""
    kernel = jnp.asarray(kernel)
    h, w = kernel.shape
    k = jnp.pad(kernel, ((0, fft_shape[0] - h), (0, fft_shape[1] - w)))
    k = jnp.roll(k, (-(h // 2), -(w // 2)), axis=(0, 1))
    return jnp.fft.rfft2(k)


def _convolve_ft(image, kernel_ft, fft_shape):
    image = jnp.asarray(image)
    hi, wi = image.shape[-2:]
    f = jnp.fft.rfft2(image, s=fft_shape, axes=(-2, -1))
    return jnp.fft.irfft2(f * kernel_ft, s=fft_shape, axes=(-2, -1))[..., :hi, :wi]


def fft_convolve(image, kernel, pad: int | tuple[int, int] | None = None):
    """Linear convolution of ``image (..., H, W)`` by a centred odd ``kernel (h, w)``, by FFT (JAX).

    The result has the image's shape and equals ``scipy.signal.convolve2d(image, kernel, mode="same")``
    (flux outside the image is lost, nothing wraps round). Differentiable in image and kernel; the
    kernel is not normalised (use :func:`normalized_psf` first for a PSF). Units: the image's.

    Padding: the image is placed in the corner of a zero canvas of ``(H + pad_y, W + pad_x)`` pixels
    (at least the kernel's size), each side rounded up to a fast FFT length (2, 3, 5-smooth). The FFT
    is periodic, so this one band of at least ``pad`` zeros separates the image's last row from its
    first: every side of the image sees ``pad`` zeros. ``pad`` (an int, or a pair (rows, cols)) must
    be at least the kernel half-width ``(h // 2, w // 2)``, which is the default and exactly enough.
    """
    fft_shape = _fft_geometry(np.shape(image), np.shape(kernel), pad)
    return _convolve_ft(image, _kernel_ft(kernel, fft_shape), fft_shape)


@dataclass(frozen=True, eq=False)
class FFTConvolver:
    """Linear FFT convolution by a fixed kernel for a fixed image shape, the kernel's FFT precomputed.

    Build with :meth:`build`; ``conv(image)`` then equals ``fft_convolve(image, kernel, pad)``.
    To keep :attr:`kernel_ft` out of a compiled function's constants, pass it as an argument:
    ``jax.jit(lambda img, kft: conv(img, kft))(image, conv.kernel_ft)``. For a kernel that changes
    (e.g. a parametric PSF with sampled width), ``conv(image, conv.transform(kernel))`` inside the
    model is differentiable in the kernel.

    Attributes
    ----------
    image_shape:
        ``(H, W)`` of the images (leading batch axes are allowed).
    kernel_shape:
        ``(h, w)``, odd.
    fft_shape:
        ``(Ny, Nx)`` of the zero-padded FFT grid (see :func:`fft_convolve`).
    kernel_ft:
        ``rfft2`` of the kernel centred at ``[0, 0]``, shape ``(Ny, Nx // 2 + 1)``, complex.
    """

    image_shape: tuple[int, int]
    kernel_shape: tuple[int, int]
    fft_shape: tuple[int, int]
    kernel_ft: jax.Array

    @classmethod
    def build(cls, kernel, image_shape: tuple[int, int], pad: int | tuple[int, int] | None = None):
        """Precompute the kernel's FFT for images of ``image_shape`` (``pad`` as in :func:`fft_convolve`)."""
        image_shape = shape2("image_shape", image_shape)
        kernel_shape = _kernel_shape(np.shape(kernel))
        fft_shape = _fft_geometry(image_shape, kernel_shape, pad)
        return cls(image_shape, kernel_shape, fft_shape, _kernel_ft(kernel, fft_shape))

    def transform(self, kernel):
        """The ``kernel_ft`` of another kernel of the same shape (JAX, differentiable)."""
        if tuple(np.shape(kernel)) != self.kernel_shape:
            raise ValueError(f"kernel has shape {tuple(np.shape(kernel))}, the convolver was built for "
                             f"{self.kernel_shape}")
        return _kernel_ft(kernel, self.fft_shape)

    def __call__(self, image, kernel_ft=None):
        """Convolve ``image (..., H, W)``; ``kernel_ft`` defaults to :attr:`kernel_ft`."""
        if tuple(np.shape(image)[-2:]) != self.image_shape:
            raise ValueError(f"image has shape {tuple(np.shape(image))}, the convolver was built for "
                             f"images of {self.image_shape}")
        return _convolve_ft(image, self.kernel_ft if kernel_ft is None else kernel_ft, self.fft_shape)
