"""The prior over tile catalogs: how many stars per tile, where, how bright, what colour.

Per tile independently: the number of stars ``n`` is Poisson with mean ``mean_sources`` truncated at
``max_sources`` (the mass above it is put on ``max_sources``); each star is uniform in the tile; its
flux in the first (reference) band is a truncated Pareto on ``[flux_min, flux_max]`` electrons with
exponent ``alpha`` (density ∝ f^-(alpha+1)); every other band's flux is the reference flux times
``exp(c)``, ``c ~ Normal(colour_mean[b], colour_sd[b])`` (natural log of the flux ratio). Stars in a
tile are sorted brightest first in the reference band.

:meth:`TilePrior.sample` draws whole batches of tile catalogs with ``jax.random`` (used by the
simulator); :func:`tile_catalog_model` is the same prior, with the renderer and a pixel likelihood,
as a NumPyro program (``numpyro.infer`` runners can condition it on the counts and sample the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np


class PriorError(ValueError):
    """A prior setting outside its allowed range."""


@dataclass(frozen=True)
class TilePrior:
    """Prior over tile catalogs (fluxes in electrons; colours as natural-log flux ratios)."""

    tile_size: int = 2
    max_sources: int = 2
    mean_sources: float = 0.6
    flux_min: float = 700.0
    flux_max: float = 1.0e6
    alpha: float = 1.0
    bands: tuple[str, ...] = ("r", "i")
    colour_mean: tuple[float, ...] = field(default=(0.0,))
    colour_sd: tuple[float, ...] = field(default=(0.15,))

    def __post_init__(self):
        nc = len(self.bands) - 1
        checks = [
            (isinstance(self.tile_size, int) and self.tile_size >= 1,
             f"tile_size must be an integer >= 1, got {self.tile_size!r}"),
            (isinstance(self.max_sources, int) and self.max_sources >= 1,
             f"max_sources must be an integer >= 1, got {self.max_sources!r}"),
            (np.isfinite(self.mean_sources) and self.mean_sources > 0,
             f"mean_sources must be > 0, got {self.mean_sources!r}"),
            (np.isfinite(self.flux_min) and self.flux_min > 0,
             f"flux_min must be > 0 electrons, got {self.flux_min!r}"),
            (np.isfinite(self.flux_max) and self.flux_max > self.flux_min,
             f"flux_max must be > flux_min ({self.flux_min}), got {self.flux_max!r}"),
            (np.isfinite(self.alpha) and self.alpha > 0, f"alpha must be > 0, got {self.alpha!r}"),
            (len(self.bands) >= 1, "bands must name at least one band"),
            (len(self.colour_mean) == nc and len(self.colour_sd) == nc,
             f"colour_mean and colour_sd need one value per band after the first ({nc}), got "
             f"{len(self.colour_mean)} and {len(self.colour_sd)}"),
            (all(s > 0 for s in self.colour_sd), f"colour_sd must be > 0, got {self.colour_sd}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise PriorError(msg)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    def count_probs(self) -> jnp.ndarray:
        """(max_sources + 1,) probabilities of 0..max_sources stars in a tile."""
        k = np.arange(self.max_sources + 1)
        from scipy.stats import poisson

        p = poisson.pmf(k, self.mean_sources)
        p[-1] += poisson.sf(self.max_sources, self.mean_sources)
        return jnp.asarray(p / p.sum(), jnp.float32)

    def flux_from_uniform(self, u):
        """Inverse CDF of the truncated Pareto: reference-band flux (electrons) for ``u`` in [0, 1)."""
        ratio = (self.flux_max / self.flux_min) ** (-self.alpha)
        return self.flux_min * (1.0 - u * (1.0 - ratio)) ** (-1.0 / self.alpha)

    def log_flux_density(self, flux):
        """Log density of the reference-band flux (per electron), ``-inf`` outside the bounds."""
        a, lo, hi = self.alpha, self.flux_min, self.flux_max
        norm = np.log(a) - np.log(lo) - np.log1p(-(hi / lo) ** (-a))
        lp = norm - (a + 1) * (jnp.log(flux) - np.log(lo))
        return jnp.where((flux >= lo) & (flux <= hi), lp, -jnp.inf)

    def sample(self, key, shape: tuple[int, ...], n_tiles: tuple[int, int]):
        """Draw tile catalogs.

        Args:
            key: a ``jax.random`` key.
            shape: batch shape.
            n_tiles: (nth, ntw) tiles per image.

        Returns:
            ``(n_sources, locs, fluxes)``: (*shape, nth, ntw) int32; (*shape, nth, ntw, M, 2) tile
            fractions; (*shape, nth, ntw, M, B) electrons, brightest first, zeros in empty slots.
        """
        m, nb = self.max_sources, self.n_bands
        full = (*shape, *n_tiles)
        kn, kl, kf, kc = jax.random.split(key, 4)
        n = jax.random.categorical(kn, jnp.log(self.count_probs()), shape=full).astype(jnp.int32)
        locs = jax.random.uniform(kl, (*full, m, 2))
        on = jnp.arange(m) < n[..., None]
        ref = jnp.where(on, self.flux_from_uniform(jax.random.uniform(kf, (*full, m))), 0.0)
        ref = -jnp.sort(-ref, axis=-1)                      # brightest first; empty slots (0) stay last
        if nb > 1:
            eps = jax.random.normal(kc, (*full, m, nb - 1))
            c = jnp.asarray(self.colour_mean) + jnp.asarray(self.colour_sd) * eps
            fluxes = jnp.concatenate([ref[..., None], ref[..., None] * jnp.exp(c)], axis=-1)
        else:
            fluxes = ref[..., None]
        return n, jnp.where(on[..., None], locs, 0.0), jnp.where(on[..., None], fluxes, 0.0)

    def log_flux_bounds(self) -> tuple[float, float]:
        """(lo, hi) natural-log flux support (electrons) of every band: the reference band's bounds
        widened by 4 colour sds."""
        widen = 4 * max(self.colour_sd, default=0.0) + max((abs(c) for c in self.colour_mean), default=0.0)
        return float(np.log(self.flux_min) - widen), float(np.log(self.flux_max) + widen)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def tile_catalog_model(prior: TilePrior, psf, background, *, n_tiles: tuple[int, int], image=None,
                       band_offsets=None, oversample: int = 2, read_variance=0.0):
    """The tile-catalog prior, renderer and pixel likelihood as a NumPyro program.

    Sites: ``n_sources`` (nth, ntw) categorical; ``locs`` (nth, ntw, M, 2) uniform tile fractions;
    ``flux_u`` (nth, ntw, M) uniform, mapped to the reference flux by the Pareto inverse CDF
    (deterministic ``fluxes``); ``colour`` (nth, ntw, M, B-1) normal; ``image`` the pixels, Normal
    with the Poisson variance ``rate + read_variance`` (electrons²), ``rate = background + stars``.
    Empty slots keep their latent values but render nothing. Condition on ``n_sources``
    (``numpyro.handlers.condition``) to run gradient-based samplers on the rest.

    Args:
        prior: the :class:`TilePrior`; psf: (B, S, S) fine kernels (``oversample`` per pixel);
        background: (B, H, W) electrons; n_tiles: (nth, ntw) with ``nth * tile_size = H``;
        image: (B, H, W) observed electrons or None; band_offsets: (B, 2) pixels.
    """
    import numpyro
    import numpyro.distributions as dist

    from starmodels.tiles.render import render_tiles

    m, nb = prior.max_sources, prior.n_bands
    nth, ntw = n_tiles
    with numpyro.plate("tile_col", ntw, dim=-1), numpyro.plate("tile_row", nth, dim=-2):
        n = numpyro.sample("n_sources", dist.Categorical(probs=prior.count_probs()))
    on = jnp.arange(m) < n[..., None]
    locs = numpyro.sample("locs", dist.Uniform(0.0, 1.0).expand((nth, ntw, m, 2)).to_event(4))
    u = numpyro.sample("flux_u", dist.Uniform(0.0, 1.0).expand((nth, ntw, m)).to_event(3))
    ref = prior.flux_from_uniform(u)
    if nb > 1:
        colour = dist.Normal(jnp.asarray(prior.colour_mean), jnp.asarray(prior.colour_sd))
        c = numpyro.sample("colour", colour.expand((nth, ntw, m, nb - 1)).to_event(4))
        fluxes = jnp.concatenate([ref[..., None], ref[..., None] * jnp.exp(c)], axis=-1)
    else:
        fluxes = ref[..., None]
    numpyro.deterministic("fluxes", fluxes)
    stars = render_tiles(locs, fluxes, on, psf, prior.tile_size, band_offsets, oversample=oversample)
    rate = background + stars
    sd = jnp.sqrt(jnp.clip(rate, 1.0, None) + read_variance)
    numpyro.sample("image", dist.Normal(rate, sd).to_event(3), obs=image)
