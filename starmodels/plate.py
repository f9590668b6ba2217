"""ImagePlate: many images through one forward model, some parameters per image.

A survey cutout catalogue, a stack of exposures, the VI lab's 16 star images:
each image has its own values of the *local* sites (e.g. ``source.flux``)
while every other free site is shared. Local sites are sampled inside a
``numpyro.plate("image", n)``, so each image with its local parameters is an
independent block when nothing is shared (what the grid and amortized
runners need).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from starmodels.forward import ForwardModel, simulate
from starmodels.priors import sample_param
from starmodels.protocol import Blocks, DataError, Site, numeric_data

PLATE = "image"


class ImagePlate(eqx.Module):
    """``n`` images of ``model`` with per-image values of the ``local`` sites.

    Data have shape ``(n, ny, nx)``. Draws of a local site have a leading
    image axis (``(chain, draw, n, ...)``); shared sites are as in ``model``.
    Local sites must be sampled (have priors) and cannot be noise parameters.
    """

    model: ForwardModel
    local: tuple[str, ...] = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def __init__(self, model: ForwardModel, local: Sequence[str], n: int):
        priors = model.priors()
        bad = [k for k in local if k not in priors]
        noisy = [k for k in local if k.startswith("noise.")]
        if bad or noisy or not local or int(n) < 1:
            raise ValueError(
                f"ImagePlate needs n >= 1 (got {n}) and at least one local site, each a sampled, "
                f"non-noise site of {model.name!r}; not sampled: {bad}, noise sites: {noisy}; "
                f"sampled sites: {list(priors)}"
            )
        self.model, self.local, self.n = model, tuple(local), int(n)

    # -- the ForwardModel interface ----------------------------------------
    @property
    def name(self) -> str:
        """The one-image model's name."""
        return self.model.name

    @property
    def noise(self):
        """The one-image model's noise model (likelihood), applied to every image."""
        return self.model.noise

    @property
    def shape(self) -> tuple[int, int, int]:
        """Data shape (images, ny, nx), pixels."""
        return (self.n, *self.model.shape)

    def priors(self) -> dict[str, dist.Distribution]:
        """Sampled sites in program order; a local site's prior applies to each image."""
        return self.model.priors()

    def shared(self) -> list[str]:
        """Sampled sites common to all images."""
        return [k for k in self.priors() if k not in self.local]

    def fixed(self) -> dict[str, jnp.ndarray]:
        """Fixed parameters by site name (common to every image)."""
        return self.model.fixed()

    def labels(self) -> dict[str, list]:
        """Element labels of vector sites; a local scalar site is labelled by image index."""
        labels = self.model.labels()
        return {**labels, **{k: list(range(self.n)) for k in self.local if k not in labels}}

    def sites(self) -> dict[str, Site]:
        """Sampled sites in program order; a local site carries a leading image axis (the protocol)."""
        out = {}
        for name, site in self.model.sites().items():
            if name in self.local:
                labels = site.labels if site.shape else tuple(range(self.n))
                site = Site(name, site.latent, (self.n, *site.shape), site.support,
                            labels if len(site.shape) == 0 else None, site.to_latent)
            out[name] = site
        return out

    def blocks(self) -> Blocks:
        """Each image is a block; blocks are independent when no sampled site is shared."""
        return Blocks(self.n, self.resize, tuple(self.shared()), PLATE)

    def alternate_modes(self, params: Mapping[str, Any]) -> dict[str, dict]:
        """Known near-symmetries: those of the one-image model, on shared sites only."""
        modes = self.model.alternate_modes(params)
        return {name: p for name, p in modes.items() if all(p[k] is params[k] for k in self.local)}

    def resize(self, n: int) -> ImagePlate:
        """The same plate for ``n`` images."""
        return ImagePlate(self.model, self.local, n)

    def with_priors(self, priors: Mapping[str, Any]) -> ImagePlate:
        """Copy with priors replaced by site name (a local site's prior applies to each image)."""
        return ImagePlate(self.model.with_priors(priors), self.local, self.n)

    def with_fixed(self, values: Mapping[str, Any]) -> ImagePlate:
        """Copy with the named (shared) parameters held at fixed values."""
        return ImagePlate(self.model.with_fixed(values), self.local, self.n)

    # -- forward pass -----------------------------------------------------
    def render(self, params: Mapping[str, Any]) -> jnp.ndarray:
        """Expected counts (n, ny, nx): local values carry a leading image axis."""
        local = {k: jnp.asarray(params[k]) for k in self.local if k in params}
        shared = {k: v for k, v in params.items() if k not in self.local}
        return jax.vmap(lambda loc: self.model.render({**shared, **loc}))(local)

    def sample_params(self) -> dict:
        """Sample shared sites, then local sites inside the image plate; physical values by site."""
        priors = self.priors()
        out = {k: sample_param(k, priors[k]) for k in self.shared()}
        with numpyro.plate(PLATE, self.n, dim=-1):
            out.update({k: sample_param(k, priors[k]) for k in self.local})
        return out

    def __call__(self, data=None):
        """The NumPyro program: shared priors, per-image priors in the plate, likelihood site ``obs``."""
        params = self.sample_params()
        mu = self.render(params)
        with numpyro.plate(PLATE, self.n, dim=-1):
            return self.noise.observe(mu, data, self._local("noise", params), event_ndim=2)

    def _local(self, role: str, params: Mapping[str, Any]) -> dict:
        return self.model._local(role, params)

    def log_likelihood(self, params: Mapping[str, Any], data) -> jnp.ndarray:
        """Per-pixel log-likelihood (n, ny, nx) of the images at physical ``params``."""
        return self.noise.log_prob(self.render(params), data, self._local("noise", params))

    # -- data -------------------------------------------------------------
    def check_data(self, data) -> np.ndarray:
        """Validate a stack of images; raise :class:`DataError` listing every problem."""
        arr = numeric_data(data, self.name)
        if arr.shape != self.shape:
            raise DataError(f"cannot fit {self.name!r}: data shape {arr.shape} != plate shape "
                            f"{self.shape} (images, ny, nx)")
        problems = self.noise.problems(arr)
        if problems:
            raise DataError(f"cannot fit {self.name!r}: " + "; ".join(problems))
        return self.noise.fill(arr)

    def simulate(self, params: Mapping[str, Any], seed: int = 0) -> np.ndarray:
        """Noisy images (n, ny, nx) at ``params`` (local values with a leading image axis)."""
        return simulate(self, params, seed)
