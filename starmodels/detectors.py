"""Detectors: oversampled photons to pixel counts (jitter, pixel binning, background)."""

from __future__ import annotations

import dLux as dl
import dLux.utils as dlu
import jax.numpy as jnp
from jax.scipy.signal import convolve

from starmodels.component import Component


class PixelDetector(Component):
    """A square pixel grid read at ``npixels`` pixels of ``pixel_scale`` arcsec.

    The optics render ``oversample`` x ``oversample`` sub-pixels per pixel; the
    detector blurs them by a Gaussian pointing jitter (``jitter``: sd in
    pixels, 0 for none), sums them into pixels, and adds a uniform
    ``background`` (photons per pixel).
    """

    npixels: int
    pixel_scale: float
    oversample: int
    role = "detector"
    param_names = ("jitter", "background")

    def __init__(self, npixels: int = 16, pixel_scale: float = 0.03, oversample: int = 1,
                 jitter=0.0, background=0.0):
        super().__init__({"jitter": jitter, "background": background})
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
            sigma_sub = p["jitter"] * self.oversample
            kernel = dl.layers.ApplyJitter(sigma_sub, kernel_size=4 * self.oversample + 1).kernel
            image = convolve(image, kernel, mode="same")
        pixels = dlu.downsample(image, self.oversample, mean=False)
        return pixels + p["background"]
