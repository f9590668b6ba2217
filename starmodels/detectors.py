"""Detectors: oversampled photons to pixel counts (jitter, pixel binning, background)."""

from __future__ import annotations

import math
import numbers

import dLux.utils as dlu
import equinox as eqx
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
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
    jitter_on: bool = eqx.field(static=True)
    role = "detector"
    param_names = ("jitter", "background")

    def __init__(self, npixels: int = 16, pixel_scale: float = 0.03, oversample: int = 1,
                 jitter=0.0, background=0.0, max_jitter: float = 2.0):
        super().__init__({"jitter": jitter, "background": background})
        problems = []
        for label, v in (("npixels", npixels), ("oversample", oversample)):
            if not (isinstance(v, numbers.Integral | float) and not isinstance(v, bool)
                    and float(v).is_integer() and v >= 1):
                problems.append(f"{label} must be an integer >= 1, got {v!r}")
        for label, v in (("pixel_scale", pixel_scale), ("max_jitter", max_jitter)):
            if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                problems.append(f"{label} must be a finite number > 0 (arcsec or pixels), got {v!r}")
        if problems:
            raise ValueError("PixelDetector: " + "; ".join(problems))
        self.max_jitter = float(max_jitter)
        j = self.params["jitter"]  # structural: a sampled jitter, or a fixed one that is not zero
        self.jitter_on = isinstance(j, dist.Distribution) or bool(np.any(np.asarray(j) != 0.0))
        self.npixels, self.pixel_scale, self.oversample = int(npixels), float(pixel_scale), int(oversample)

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (ny, nx) in detector pixels."""
        return (self.npixels, self.npixels)

    def _rebuild(self, params: dict) -> PixelDetector:
        """A copy with new parameters (the jitter switched on or off to match)."""
        return PixelDetector(self.npixels, self.pixel_scale, self.oversample, max_jitter=self.max_jitter,
                             **params)

    def apply(self, image: jnp.ndarray, p: dict) -> jnp.ndarray:
        """Oversampled photons (N*os, N*os) -> expected counts per pixel (N, N)."""
        if self.jitter_on:
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
