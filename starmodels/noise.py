"""Noise models: the likelihood of the pixel data given expected counts.

Each model checks its data before any sampling (``problems``), fills masked
pixels with a harmless value so they can hold NaN on input (``fill``), gives
the per-pixel distribution (``distribution``) and draws simulated data
(``simulate``). Units: counts (photons or electrons) per pixel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from starmodels.component import Component


class NoiseModel(Component):
    """Base class: a pixel likelihood with an optional boolean ``mask`` (True = use)."""

    mask: jnp.ndarray | None
    role = "noise"

    def _set_mask(self, mask):
        if mask is None:
            self.mask = None
            return
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(f"mask must be boolean (True = use the pixel), got dtype {m.dtype}")
        self.mask = jnp.asarray(m)

    def use(self, shape) -> np.ndarray:
        """Boolean map of used pixels for data of ``shape`` (an image mask applies to every image)."""
        return np.ones(shape, bool) if self.mask is None else np.broadcast_to(np.asarray(self.mask), shape)

    def problems(self, data: np.ndarray) -> list[str]:
        """Every problem with ``data`` under this model, as readable sentences."""
        out = []
        if self.mask is not None and self.mask.shape != data.shape[data.ndim - self.mask.ndim:]:
            out.append(f"mask shape {tuple(self.mask.shape)} != data shape {data.shape}")
            return out
        use = self.use(data.shape)
        bad = ~np.isfinite(data) & use
        if bad.any():
            out.append(f"{int(bad.sum())} non-finite (NaN/inf) pixel(s) outside the mask, "
                       f"first at {tuple(int(i) for i in np.argwhere(bad)[0])}")
        if not use.any():
            out.append("the mask excludes every pixel")
        return out + self._value_problems(data, use)

    def _value_problems(self, data: np.ndarray, use: np.ndarray) -> list[str]:
        """Model-specific checks of the used pixels (overridden by subclasses)."""
        return []

    def fill(self, data: np.ndarray) -> np.ndarray:
        """Data with masked pixels set to 0 (they carry no weight)."""
        return np.where(self.use(data.shape), data, 0.0)

    def observe(self, mu: jnp.ndarray, data, p: dict, event_ndim: int | None = None):
        """The numpyro likelihood site ``obs``: the last ``event_ndim`` axes (default all) are one event."""
        d = self.distribution(mu, p)
        if self.mask is not None:
            d = d.mask(self.mask)
        return numpyro.sample("obs", d.to_event(mu.ndim if event_ndim is None else event_ndim), obs=data)

    def log_prob(self, mu, data, p: dict | None = None) -> jnp.ndarray:
        """Per-pixel log-likelihood of ``data`` given expected counts ``mu`` (0 where masked); jittable."""
        p = {**self.fixed(), **(p or {})}
        data = jnp.asarray(data)
        if self.mask is not None:
            data = jnp.where(self.mask, data, 0.0)
        lp = self.distribution(mu, p).log_prob(data)
        return lp if self.mask is None else jnp.where(self.mask, lp, 0.0)

    def simulate(self, key, mu, p: dict | None = None) -> jnp.ndarray:
        """Noisy data (counts) drawn around expected counts ``mu`` with PRNG ``key``."""
        p = {**self.fixed(), **(p or {})}
        return self.distribution(mu, p).sample(key)


class Poisson(NoiseModel):
    """Photon counting: integer counts ~ Poisson(expected counts)."""

    param_names = ()

    def __init__(self, mask=None):
        super().__init__({})
        self._set_mask(mask)

    def _value_problems(self, data, use):
        out = []
        use = use & np.isfinite(data)
        if (data[use] < 0).any():
            out.append(f"Poisson noise needs non-negative counts; {int((data[use] < 0).sum())} "
                       f"pixel(s) are negative (min {data[use].min():g})")
        frac = data[use] != np.round(data[use])
        if frac.any():
            out.append(f"Poisson noise needs integer counts; {int(frac.sum())} pixel(s) are not "
                       "integers (data with read noise needs PoissonGaussian)")
        return out

    def distribution(self, mu, p):
        """Per-pixel Poisson distribution of counts with mean ``mu`` (counts)."""
        return PoissonCounts(jnp.clip(mu, 1e-10))


class PoissonCounts(dist.Poisson):
    """Poisson with a log-probability that stays accurate in float32 at high counts.

    The textbook ``k log(mu) - mu - lgamma(k + 1)`` cancels terms of order
    ``k log k`` (2e5 for the 2e4-photon sky of the VI lab), so its float32
    rounding noise (~0.01 per pixel, ~1 per image) swamps the energy changes
    HMC relies on. Written as ``k (log1p(x) - x) + [k log k - k - lgamma(k + 1)]``
    with ``x = (mu - k) / k``, the ``mu``-dependent part is small and exact to
    rounding; the bracket depends on the data only.
    """

    def log_prob(self, value):
        """Log-probability of counts ``value`` (float32-accurate at high counts; see the class)."""
        k, mu = value, self.rate
        pos = k > 0
        safe_k = jnp.where(pos, k, 1.0)
        x = (mu - safe_k) / safe_k
        varying = jnp.where(pos, safe_k * (jnp.log1p(x) - x), 0.0) - jnp.where(pos, 0.0, mu)
        const = jnp.where(pos, safe_k * jnp.log(safe_k) - safe_k, 0.0) - jax.scipy.special.gammaln(k + 1)
        return varying + const


class Gaussian(NoiseModel):
    """Gaussian noise with a known per-pixel sigma (scalar or map, counts)."""

    sigma: jnp.ndarray
    param_names = ()

    def __init__(self, sigma, mask=None):
        super().__init__({})
        self._set_mask(mask)
        try:
            arr = np.asarray(sigma, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"Gaussian noise: sigma must be a number or a map of numbers (counts), got "
                             f"{sigma!r}") from None
        self.sigma = jnp.asarray(arr)

    def _value_problems(self, data, use):
        out = []
        try:
            s = np.broadcast_to(np.asarray(self.sigma), data.shape)
        except ValueError:
            return [f"sigma shape {tuple(np.shape(self.sigma))} does not match data shape {data.shape}"]
        bad = ~(np.isfinite(s) & (s > 0)) & use
        if bad.any():
            out.append(f"sigma must be finite and positive; {int(bad.sum())} pixel(s) are not")
        return out

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sigma) (counts); masked pixels get sigma 1 (they carry no weight)."""
        sigma = self.sigma if self.mask is None else jnp.where(self.mask, self.sigma, 1.0)
        return dist.Normal(mu, sigma)


class PoissonGaussian(NoiseModel):
    """CCD noise: Poisson photons plus Gaussian read noise ``read_sigma`` (counts).

    Uses the standard CCD approximation ``Normal(mu, sqrt(mu + read_sigma**2))``,
    accurate when ``mu + read_sigma**2`` is more than about 10 counts.
    ``read_sigma`` may be fixed or given a prior (site ``noise.read_sigma``).
    """

    param_names = ("read_sigma",)

    def __init__(self, read_sigma, mask=None):
        super().__init__({"read_sigma": read_sigma})
        self._set_mask(mask)
        fixed = self.fixed().get("read_sigma")
        if fixed is not None and not float(fixed) > 0:
            raise ValueError(f"read_sigma must be positive, got {float(fixed)}")

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sqrt(mu + read_sigma^2)) (counts): the CCD approximation."""
        return dist.Normal(mu, jnp.sqrt(jnp.clip(mu, 0.0) + p["read_sigma"] ** 2))

    def simulate(self, key, mu, p: dict | None = None) -> jnp.ndarray:
        """Exact: Poisson photons plus Gaussian read noise (not the approximation)."""
        p = {**self.fixed(), **(p or {})}
        return simulate_poisson_read(key, mu, p["read_sigma"])


def simulate_poisson_read(key, mu, read_sigma) -> jnp.ndarray:
    """Exact CCD simulation: Poisson(mu) photons plus Normal(0, read_sigma) read noise."""
    k1, k2 = jax.random.split(key)
    return jax.random.poisson(k1, mu).astype(float) + read_sigma * jax.random.normal(k2, mu.shape)
