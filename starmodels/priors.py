"""Priors: specs from model cards to numpyro distributions, sampled with O(1) latents.

A parameter named ``source.x`` with a location-scale prior (Normal, LogNormal,
Uniform) is sampled as a standard latent ``source.x_base`` and mapped to
physical units by a deterministic site ``source.x``. NUTS and SVI then work on
latents of order one whatever the physical scale (nanometres, arcseconds,
photons), and posterior samples keep the physical name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

BASE_SUFFIX = "_base"

_FAMILIES = {
    "Normal": (dist.Normal, ("loc", "scale")),
    "LogNormal": (dist.LogNormal, ("loc", "scale")),
    "Uniform": (dist.Uniform, ("low", "high")),
    "HalfNormal": (dist.HalfNormal, ("scale",)),
    "TruncatedNormal": (dist.TruncatedNormal, ("loc", "scale", "low", "high")),
}


def prior_from_spec(spec: Mapping[str, Any] | dist.Distribution, name: str = "?") -> dist.Distribution:
    """Turn a card entry such as ``{dist = "Normal", loc = 0, scale = 0.02}`` into a distribution.

    Lists become arrays, so a vector parameter takes one value per element.
    A numpyro distribution passes through unchanged.
    """
    if isinstance(spec, dist.Distribution):
        return spec
    spec = dict(spec)
    family = spec.pop("dist", None)
    if family not in _FAMILIES:
        raise ValueError(
            f"prior for {name!r}: unknown dist {family!r}; choose one of {sorted(_FAMILIES)}"
        )
    cls, args = _FAMILIES[family]
    missing = [a for a in args if a not in spec]
    extra = sorted(set(spec) - set(args))
    if missing or extra:
        raise ValueError(
            f"prior for {name!r} ({family}): needs {list(args)}; missing {missing}, unexpected {extra}"
        )
    return cls(*(jnp.asarray(spec[a], dtype=float) for a in args))


def _standard_form(prior: dist.Distribution):
    """Return ``(base, to_physical)`` for location-scale families, else ``None``."""
    shape = prior.batch_shape
    if type(prior) is dist.Normal:
        return dist.Normal(jnp.zeros(shape), 1.0), lambda z: prior.loc + prior.scale * z
    if type(prior) is dist.LogNormal:
        base = prior.base_dist
        return dist.Normal(jnp.zeros(shape), 1.0), lambda z: jnp.exp(base.loc + base.scale * z)
    if type(prior) is dist.Uniform:
        return (
            dist.Uniform(jnp.zeros(shape), 1.0),
            lambda u: prior.low + (prior.high - prior.low) * u,
        )
    return None


def sample_param(name: str, prior: dist.Distribution):
    """Sample parameter ``name`` inside a numpyro program, in physical units.

    Vector priors (non-empty batch shape) become one site with an event
    dimension per batch dimension, so they need no plate.
    """
    ndim = len(prior.batch_shape)
    standard = _standard_form(prior)
    if standard is None:
        return numpyro.sample(name, prior.to_event(ndim) if ndim else prior)
    base, to_physical = standard
    z = numpyro.sample(name + BASE_SUFFIX, base.to_event(ndim) if ndim else base)
    return numpyro.deterministic(name, to_physical(z))



def latent_site(name: str, prior: dist.Distribution):
    """The sample site that carries parameter ``name`` and its support: ``(site, constraint)``."""
    standard = _standard_form(prior)
    if standard is None:
        return name, prior.support
    return name + BASE_SUFFIX, standard[0].support


def physical_values(model, latents: Mapping[str, Any], constrained: bool = False) -> dict:
    """Physical values of every sampled site of ``model`` from its latent sites.

    ``latents`` are unconstrained (as samplers and grids see them) unless
    ``constrained`` (values in each latent's support, as guides return them).
    """
    if constrained:
        from numpyro import handlers

        tr = handlers.trace(handlers.substitute(model.sample_params, data=dict(latents))).get_trace()
        return {k: tr[k]["value"] for k in model.priors()}
    from numpyro.infer.util import constrain_fn

    values = constrain_fn(model.sample_params, (), {}, latents, return_deterministic=True)
    return {k: values[k] for k in model.priors()}
