"""Detectors: oversampled photons to pixel counts (jitter, pixel binning, background)."""

from __future__ import annotations

import math

import dLux.utils as dlu
import jax.numpy as jnp
from jax.scipy.signal import convolve
from jax.scipy.special import ndtr

from starmodels.component import Component


class PixelDetector(Component):
    """A square pixel grid read at ``npixels`` pixels of ``pixel_scale`` arcsec.

    The optics render ``oversample`` x ``oversample`` sub-pixels per pixel; the
    detector blurs them by a Gaussian pointing jitter (``jitter``: sd in
    pixels, 0 for none; the kernel covers up to ``max_jitter`` pixels at 4 sd),
    sums them into pixels, and adds a uniform ``background`` (photons per pixel).
    """

    npixels: int
    pixel_scale: float
    oversample: int
    max_jitter: float
    role = "detector"
    param_names = ("jitter", "background")

    def __init__(self, npixels: int = 16, pixel_scale: float = 0.03, oversample: int = 1,
                 jitter=0.0, background=0.0, max_jitter: float = 2.0):
        super().__init__({"jitter": jitter, "background": background})
        self.max_jitter = float(max_jitter)
        if npixels < 1 or oversample < 1 or pixel_scale <= 0:
            raise ValueError("npixels and oversample must be >= 1 and pixel_scale > 0")
        self.npixels, self.pixel_scale, self.oversample = int(npixels), float(pixel_scale), int(oversample)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.npixels, self.npixels)

    def _jitter_on(self) -> bool:
        j = self.params["jitter"]
        return not (hasattr(j, "shape") and not hasattr(j, "sample") and float(j) == 0.0)

    def apply(self, image: jnp.ndarray, p: dict) -> jnp.ndarray:
        """Oversampled photons (N*os, N*os) -> expected counts per pixel (N, N)."""
        if self._jitter_on():
            k = self.jitter_kernel(p["jitter"])
            image = convolve(convolve(image, k[:, None], mode="same"), k[None, :], mode="same")
        pixels = dlu.downsample(image, self.oversample, mean=False)
        return pixels + p["background"]

    def jitter_kernel(self, sigma) -> jnp.ndarray:
        """1-D Gaussian of sd ``sigma`` pixels integrated over sub-pixels; sums to 1.

        (dLux 0.15's ``ApplyJitter`` kernel always spans +-5 sd over its
        ``kernel_size`` pixels, so its width does not follow ``sigma``.)
        """
        n_sub = self.npixels * self.oversample
        half = min(math.ceil(4 * self.max_jitter * self.oversample), (n_sub - 1) // 2)
        edges = (jnp.arange(-half, half + 2) - 0.5) / self.oversample
        s = jnp.maximum(sigma, 1e-3)
        k = jnp.diff(ndtr(edges / s))
        return k / k.sum()
