"""ForwardModel: source -> optics -> detector -> noise, as one NumPyro program.

``render(params)`` is the pure, jittable forward pass (expected counts per
pixel); calling the model is the NumPyro program. Sites are named
``role.param`` (``source.separation``, ``optics.zernike``, ...) and any prior
can be replaced by name with :meth:`ForwardModel.with_priors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from starmodels.component import Component
from starmodels.detectors import PixelDetector
from starmodels.noise import NoiseModel
from starmodels.optics import TelescopeOptics
from starmodels.priors import latent_site, sample_param, to_latent
from starmodels.protocol import DataError, Site, numeric_data

ROLES = ("source", "optics", "detector", "noise")
__all__ = ["DataError", "ForwardModel", "ROLES"]


class ForwardModel(eqx.Module):
    """One image: a source seen through optics, read by a detector, compared with data by a noise model.

    Satisfies :class:`starmodels.protocol.Model`. Sites are named
    ``role.param``; data are counts per pixel of shape :attr:`shape`.
    """

    source: Component
    optics: TelescopeOptics
    detector: PixelDetector
    noise: NoiseModel
    name: str = eqx.field(static=True, default="model")

    def __check_init__(self):
        o, d = self.optics, self.detector
        if (o.psf_npixels, o.oversample) != (d.npixels, d.oversample) or not np.isclose(
            o.pixel_scale, d.pixel_scale
        ):
            raise ValueError(
                "optics and detector grids differ: optics renders "
                f"{o.psf_npixels} px x{o.oversample} at {o.pixel_scale} arcsec, detector reads "
                f"{d.npixels} px x{d.oversample} at {d.pixel_scale} arcsec"
            )

    # -- parameters -------------------------------------------------------
    def components(self) -> dict[str, Component]:
        """The four components by role: source, optics, detector, noise."""
        return {r: getattr(self, r) for r in ROLES}

    def priors(self) -> dict[str, dist.Distribution]:
        """Sampled sites in program order: full name -> prior (physical units)."""
        return {f"{r}.{k}": v for r, c in self.components().items() for k, v in c.priors().items()}

    def fixed(self) -> dict[str, jnp.ndarray]:
        """Fixed parameters by full site name, in their physical units."""
        return {f"{r}.{k}": v for r, c in self.components().items() for k, v in c.fixed().items()}

    def labels(self) -> dict[str, list]:
        """Element labels of vector sites, e.g. ``{"optics.zernike": [4, ..., 10]}``."""
        return {f"{r}.{k}": v for r, c in self.components().items() for k, v in c.labels().items()}

    def sites(self) -> dict[str, Site]:
        """The sampled sites in program order (the model protocol)."""
        labels = self.labels()
        out = {}
        for name, prior in self.priors().items():
            latent, support = latent_site(name, prior)
            shape = tuple(prior.batch_shape) + tuple(prior.event_shape)
            lab = labels.get(name)
            out[name] = Site(name, latent, shape, support,
                             tuple(lab) if lab is not None and len(shape) == 1 else None,
                             lambda v, p=prior: to_latent(p, v))
        return out

    def alternate_modes(self, params: Mapping[str, Any]) -> dict[str, dict]:
        """Physical values related to ``params`` by known near-symmetries of the likelihood, by name.

        Each component may declare some (e.g. the optics' sign flip of the
        point-symmetric Zernike terms); only those touching sampled sites count.
        """
        out = {}
        sampled = self.priors()
        for role, comp in self.components().items():
            modes = getattr(comp, "alternate_modes", None)
            if modes is None:
                continue
            local = {k: params[f"{role}.{k}"] for k in comp.param_names if f"{role}.{k}" in sampled}
            for name, changed in modes(local).items():
                if changed:
                    out[f"{role}.{name}"] = {**params, **{f"{role}.{k}": v for k, v in changed.items()}}
        return out

    def _replace(self, values: Mapping[str, Any]) -> ForwardModel:
        model = self
        for full, value in values.items():
            role, _, local = full.partition(".")
            if role not in ROLES or local not in getattr(model, role).param_names:
                valid = sorted(set(self.priors()) | set(self.fixed()))
                raise KeyError(f"no parameter {full!r} in model {self.name!r}; parameters: {valid}")
            new = getattr(model, role).replace(local, value)
            model = eqx.tree_at(lambda m, r=role: getattr(m, r), model, new)
        return model

    def with_priors(self, priors: Mapping[str, Any]) -> ForwardModel:
        """Copy with priors replaced by site name (numpyro distributions or card specs)."""
        bad = [k for k, v in priors.items() if not isinstance(v, dist.Distribution | Mapping)]
        if bad:
            raise TypeError(f"with_priors needs distributions; use with_fixed for {bad}")
        return self._replace(priors)

    def with_fixed(self, values: Mapping[str, Any]) -> ForwardModel:
        """Copy with the named parameters held at fixed values."""
        return self._replace(values)

    def with_noise(self, noise: NoiseModel) -> ForwardModel:
        """Copy with another noise model (likelihood), e.g. ``Poisson()`` or ``Gaussian(sigma)``."""
        return eqx.tree_at(lambda m: m.noise, self, noise)

    # -- forward pass -----------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """Shape (ny, nx) of the data this model explains, in detector pixels."""
        return self.detector.shape

    def _local(self, role: str, params: Mapping[str, Any]) -> dict:
        """Parameters of one component: given values, else its fixed values."""
        comp = getattr(self, role)
        out = dict(comp.fixed())
        for k in comp.param_names:
            full = f"{role}.{k}"
            if full in params:
                out[k] = params[full]
            elif k not in out:
                raise KeyError(f"render needs {full!r}; got {sorted(params)}")
        return out

    def render(self, params: Mapping[str, Any]) -> jnp.ndarray:
        """Expected counts per pixel (N, N) for physical parameter values; pure and jittable."""
        positions, fluxes = self.source.positions_fluxes(self._local("source", params))
        psfs = self.optics.psfs(self._local("optics", params), positions)
        image = jnp.tensordot(fluxes, psfs, axes=1)
        return self.detector.apply(image, self._local("detector", params))

    def sample_params(self) -> dict:
        """Sample every free parameter (inside a NumPyro program); physical values by site name."""
        return {name: sample_param(name, prior) for name, prior in self.priors().items()}

    def __call__(self, data=None):
        """The NumPyro program: priors, render, likelihood site ``obs``."""
        params = self.sample_params()
        mu = self.render(params)
        return self.noise.observe(mu, data, self._local("noise", params))

    def log_likelihood(self, params: Mapping[str, Any], data) -> jnp.ndarray:
        """Per-pixel log-likelihood (ny, nx) of ``data`` at physical ``params`` (0 on masked pixels)."""
        return self.noise.log_prob(self.render(params), data, self._local("noise", params))

    # -- data -------------------------------------------------------------
    def check_data(self, data) -> np.ndarray:
        """Validate ``data`` for this model; raise :class:`DataError` listing every problem.

        Returns the data as float array with masked pixels filled, ready to fit.
        """
        arr = numeric_data(data, self.name)
        problems = []
        if arr.shape != self.shape:
            problems.append(f"data shape {arr.shape} != model image shape {self.shape}")
        else:
            problems += self.noise.problems(arr)
        if problems:
            raise DataError(
                f"cannot fit {self.name!r}: " + "; ".join(problems)
            )
        return self.noise.fill(arr)

    def simulate(self, params: Mapping[str, Any], seed: int = 0) -> np.ndarray:
        """Noisy data (counts per pixel) drawn from the model at ``params`` (physical units)."""
        return simulate(self, params, seed)


@eqx.filter_jit
def _simulate(model, params, key):
    mu = model.render(params)
    return model.noise.simulate(key, mu, model._local("noise", params))


def simulate(model, params: Mapping[str, Any], seed: int = 0) -> np.ndarray:
    """Noisy data from ``model`` (ForwardModel or ImagePlate) at physical ``params``; one compiled call."""
    params = {k: jnp.asarray(v, dtype=float) for k, v in params.items()}
    return np.asarray(_simulate(model, params, jax.random.PRNGKey(seed)), dtype=float)
