"""Wake phase: fit what the simulator cannot know in advance on the real image, given the encoder.

With the encoder's most probable catalog of the real image held fixed, the image's likelihood
(Gaussian with the Poisson variance plus the read variance) is maximised over

* each band's PSF profile (the six SDSS profile numbers, :mod:`starmodels.tiles.psf`),
* each band's flux scale (a calibration factor between the simulator's electrons and the image's),
* each band's smooth background (a 2-D Legendre polynomial: the sky plus the unresolved light),

by Adam on unconstrained parameters (log widths, log amplitudes). The fitted PSF goes back into the
simulator and the encoder is fine-tuned on the new simulations (``train_encoder`` from its current
weights); the benchmark reports the F1 before and after. Pixels within ``margin`` of the edge (lit by
stars outside the image, which the catalog does not hold) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from starmodels.tiles.psf import PowerLawPSF, fine_kernel
from starmodels.tiles.render import render_tiles


@dataclass
class WakeFit:
    """Fitted PSF profiles (one per band), flux scales (B,), background coefficients (B, K) and maps
    (B, H, W) electrons, and the negative log likelihood per pixel at each logged step."""

    profiles: list
    flux_scale: np.ndarray
    background_coefficients: np.ndarray
    background: np.ndarray
    history: list


def poly_design(h: int, w: int, degree: int) -> np.ndarray:
    """(H*W, K) design matrix of a 2-D polynomial of total degree ``degree`` in Legendre polynomials of
    the row and column scaled to [-1, 1] (K = (degree+1)(degree+2)/2; column 0 is the constant)."""
    from numpy.polynomial import legendre

    y = np.linspace(-1, 1, h)
    x = np.linspace(-1, 1, w)
    cols = []
    for total in range(degree + 1):
        for i in range(total + 1):
            py = legendre.legval(y, np.eye(degree + 1)[total - i])
            px = legendre.legval(x, np.eye(degree + 1)[i])
            cols.append((py[:, None] * px[None, :]).ravel())
    return np.stack(cols, axis=1)


def _to_free(p: np.ndarray) -> np.ndarray:
    """Profile numbers to unconstrained ones: logs, and log(beta - 1) since beta > 1."""
    z = np.log(np.clip(p, 1e-6, None))
    z[4] = np.log(p[4] - 1.0)                                        # beta > 1
    return z


def _from_free(z):
    p = jnp.exp(z)
    return p.at[..., 4].set(1.0 + jnp.exp(z[..., 4]))


def fit_instrument(image: np.ndarray, n_sources, locs, fluxes, profiles: list[PowerLawPSF], *,
                   tile_size: int, oversample: int, band_offsets, read_variance, psf_size: int = 25,
                   degree: int = 2, margin: int = 6, steps: int = 300, learning_rate: float = 0.02,
                   background=None) -> WakeFit:
    """Maximum-likelihood PSF profiles, flux scales and backgrounds for a real image and a fixed catalog.

    Args:
        image: (B, H, W) electrons; n_sources, locs, fluxes: the encoder's tile catalog of it.
        profiles: starting PSF profiles per band; tile_size, oversample, band_offsets: as the simulator.
        read_variance: (B,) electrons²; psf_size: PSF side in pixels; degree: background polynomial.
        margin: edge pixels left out; steps, learning_rate: Adam; background: starting (B, H, W)
            background (its least-squares polynomial starts the fit), default the image's 10th percentile.
    """
    img = jnp.asarray(image, jnp.float32)
    nb, h, w = img.shape
    a = jnp.asarray(poly_design(h, w, degree), jnp.float32)
    if background is None:
        background = np.percentile(image, 10, axis=(1, 2))[:, None, None] * np.ones((1, h, w))
    start_bg = np.asarray(background, float)
    coef0 = np.stack([np.linalg.lstsq(np.asarray(a), start_bg[b].ravel(), rcond=None)[0] for b in range(nb)])
    # background coefficients in units of each band's level, so one Adam step moves every parameter
    # by a similar relative amount
    level = jnp.asarray(np.abs(coef0[:, :1]) + 1.0, jnp.float32)
    theta = {"psf": jnp.asarray(np.stack([_to_free(p.array()) for p in profiles]), jnp.float32),
             "log_scale": jnp.zeros(nb), "coef": jnp.asarray(coef0, jnp.float32) / level}
    mask = np.zeros((h, w), np.float32)
    mask[margin:h - margin, margin:w - margin] = 1.0
    mask = jnp.asarray(mask)
    on = jnp.arange(locs.shape[-2]) < jnp.asarray(n_sources)[..., None]
    locs, fluxes = jnp.asarray(locs), jnp.asarray(fluxes)
    offsets = jnp.asarray(band_offsets, jnp.float32)
    rv = jnp.asarray(read_variance, jnp.float32)[:, None, None]

    def rate(theta):
        kern = jax.vmap(lambda z: fine_kernel(_from_free(z), psf_size, oversample))(theta["psf"])
        stars = render_tiles(locs, fluxes * jnp.exp(theta["log_scale"]), on, kern, tile_size, offsets,
                             oversample=oversample)
        return background_map(theta) + stars

    def background_map(theta):
        return (a @ (theta["coef"] * level).T).T.reshape(nb, h, w)

    def nll(theta):
        mu = rate(theta)
        var = jnp.clip(mu, 1.0, None) + rv
        return (mask * (0.5 * (img - mu) ** 2 / var + 0.5 * jnp.log(var))).sum() / (mask.sum() * nb)

    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, 0.05))

    @jax.jit
    def step(theta, state):
        loss, g = jax.value_and_grad(nll)(theta)
        upd, state = opt.update(g, state, theta)
        return optax.apply_updates(theta, upd), state, loss

    state = opt.init(theta)
    history = []
    for i in range(steps):
        theta, state, loss = step(theta, state)
        if i % 25 == 0 or i == steps - 1:
            history.append(float(loss))
    if not np.isfinite(history[-1]):
        raise FloatingPointError(f"wake fit diverged (loss {history[-1]}); lower learning_rate")
    p = np.asarray(_from_free(theta["psf"]))
    return WakeFit([PowerLawPSF(*map(float, row)) for row in p], np.exp(np.asarray(theta["log_scale"])),
                   np.asarray(theta["coef"] * level), np.asarray(background_map(theta)), history)


def fit_luminosity(fluxes, flux_lo: float, flux_max: float, n_tiles: int, flux_min: float) -> dict:
    """Empirical-Bayes update of the prior's luminosity function from a catalog of the real image.

    Above ``flux_lo`` (electrons, where the encoder's detections are complete, as measured on
    simulations) the reference-band fluxes of the detections are fitted by a Pareto truncated at
    ``flux_max``: the maximum-likelihood exponent ``alpha``; the mean number of stars per tile above
    the prior's ``flux_min`` is then ``N(>= flux_lo) / n_tiles`` scaled by ``(flux_lo / flux_min)^alpha``.

    Returns:
        ``{"alpha", "alpha_sd", "mean_sources", "n_used"}``.
    """
    from scipy.optimize import minimize_scalar

    f = np.asarray(fluxes, float)
    f = f[(f >= flux_lo) & (f <= flux_max)]
    if f.size < 10:
        raise ValueError(f"only {f.size} detections above {flux_lo:.0f} electrons: too few to fit a "
                         "luminosity function (need 10)")
    s = np.log(f / flux_lo).sum()
    r = np.log(flux_max / flux_lo)

    def nll(a):          # truncated Pareto on [flux_lo, flux_max]
        return -(f.size * (np.log(a) - np.log1p(-np.exp(-a * r))) - a * s)

    a = float(minimize_scalar(nll, bounds=(0.05, 5.0), method="bounded").x)
    mean = f.size / n_tiles * (flux_lo / flux_min) ** a
    return {"alpha": a, "alpha_sd": a / np.sqrt(f.size), "mean_sources": float(mean), "n_used": int(f.size)}
