"""The SDSS PSF profile (double Gaussian + power-law wings), sampled on a fine pixel grid.

SDSS PHOTO describes each band's PSF by a radial profile (psField HDU 6; pixels):

    p(r) ∝ exp(-r²/2σ1²) + b exp(-r²/2σ2²) + p0 (1 + r²/(β σp²))^(-β/2)

Stars are rendered on a grid ``oversample`` times finer than the pixels (so a sub-pixel shift only
interpolates a well-sampled profile) and binned back, which integrates the profile over pixels.
:func:`fit_profile` fits the six numbers (plus a sub-pixel centre) to a pixelated PSF image such as the
field's KL PSF, so the continuous profile reproduces it after pixel integration.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

NAMES = ("sigma1", "sigma2", "b", "p0", "beta", "sigmap")


@dataclass(frozen=True)
class PowerLawPSF:
    """One band's SDSS PSF profile; widths in pixels, ``b`` and ``p0`` relative amplitudes."""

    sigma1: float
    sigma2: float
    b: float
    p0: float
    beta: float
    sigmap: float

    @classmethod
    def from_psfield(cls, path, band: str) -> PowerLawPSF:
        """Profile of ``band`` (u, g, r, i or z) from a psField file's HDU 6."""
        from starmodels.io.fits_open import hdu_data, open_fits

        idx = "ugriz".index(band)
        with open_fits(path, what="psField file") as hdul:
            row = hdu_data(hdul, 6, path)[0]
            return cls(*(float(row[f"psf_{n}"][idx]) for n in NAMES))

    def array(self) -> np.ndarray:
        """The six numbers as an array in :data:`NAMES` order."""
        return np.array([getattr(self, n) for n in NAMES], float)


def profile(r2, params):
    """Unnormalised profile at squared radius ``r2`` (pixels²); ``params`` in :data:`NAMES` order."""
    s1, s2, b, p0, beta, sp = (params[..., k] for k in range(6))
    return (jnp.exp(-r2 / (2 * s1**2)) + b * jnp.exp(-r2 / (2 * s2**2))
            + p0 * (1 + r2 / (beta * sp**2)) ** (-beta / 2))


def sampled(params, n: int, step: float, centre=(0.0, 0.0), subsample: int = 4):
    """The profile on an ``n`` x ``n`` grid of cells of side ``step`` pixels, normalised to sum 1.

    Cell ``(k, l)`` is centred at ``((k - n//2) * step, (l - n//2) * step)`` pixels from the profile's
    centre plus ``centre``; its value is the mean of ``subsample``² points inside the cell (the
    integral over the cell, for ``step = 1`` the pixel-integrated PSF).

    Args:
        params: (..., 6) profile numbers in :data:`NAMES` order (pixels).
        n: odd grid side; step: cell side (pixels); centre: (drow, dcol) pixels.

    Returns:
        (..., n, n), summing to 1.
    """
    if n % 2 == 0:
        raise ValueError(f"grid side must be odd, got {n}")
    sub = ((jnp.arange(subsample) + 0.5) / subsample - 0.5) * step
    g = (jnp.arange(n) - n // 2)[:, None] * step + sub[None, :]                # (n, sub) pixels
    gy = g - centre[0]
    gx = g - centre[1]
    r2 = gy[:, :, None, None] ** 2 + gx[None, None, :, :] ** 2                 # (n, sub, n, sub)
    p = profile(r2, jnp.asarray(params)[..., None, None, None, None, :])
    img = p.mean(axis=(-3, -1))
    return img / img.sum(axis=(-2, -1), keepdims=True)


def fine_kernel(params, size: int, oversample: int):
    """PSF kernel for :func:`starmodels.tiles.render.render_tiles`: cells of ``1/oversample`` pixel,
    odd side covering at least ``size`` pixels, sum 1."""
    n = size * oversample
    return sampled(params, n + 1 - n % 2, 1.0 / oversample)


def fit_profile(psf_image: np.ndarray, start: PowerLawPSF | None = None,
                oversample: int = 4) -> tuple[PowerLawPSF, dict]:
    """Least-squares fit of the profile (and a sub-pixel centre) to a pixelated, centred PSF image.

    Args:
        psf_image: (S, S) odd ``S``, centred (any normalisation; negative wings allowed).
        start: initial profile (default: a 1-pixel double Gaussian).
        oversample: points per pixel and axis used to integrate the profile over pixels.

    Returns:
        The fitted profile and ``{"rms": rms residual / peak, "max": max |residual| / peak,
        "centre": (drow, dcol) pixels}``.
    """
    from scipy.optimize import least_squares

    img = np.asarray(psf_image, float)
    s = img.shape[0]
    if img.ndim != 2 or img.shape[1] != s or s % 2 == 0:
        raise ValueError(f"psf_image must be square with an odd side, got shape {img.shape}")
    img = img / img.sum()
    x0 = (start or PowerLawPSF(1.0, 2.5, 0.1, 0.01, 3.0, 2.0)).array()
    lo = np.array([0.2, 0.5, 0.0, 0.0, 1.1, 0.3])
    hi = np.array([5.0, 15.0, 5.0, 1.0, 10.0, 20.0])

    def model(z):
        return np.asarray(sampled(jnp.asarray(z[:6]), s, 1.0, centre=(z[6], z[7]), subsample=oversample))

    def resid(z):
        m = model(z)
        return (m / m.sum() - img).ravel()

    z0 = np.concatenate([np.clip(x0, lo, hi), [0.0, 0.0]])
    res = least_squares(resid, z0, bounds=(np.r_[lo, -1, -1], np.r_[hi, 1, 1]), x_scale="jac", diff_step=1e-3)
    r = resid(res.x)
    peak = img.max()
    return PowerLawPSF(*res.x[:6]), {"rms": float(np.sqrt(np.mean(r**2)) / peak),
                                     "max": float(np.abs(r).max() / peak),
                                     "centre": (float(res.x[6]), float(res.x[7]))}
