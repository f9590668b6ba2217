"""Latent sites of a protocol model: physical values from latents and back, flat vectors.

Runners work in numpyro's unconstrained latent space (sites keyed by their
latent names, as ``potential_fn`` takes them); these helpers map between
that space and physical parameter values using only the model protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.util import constrain_fn


def physical_values(model, latents: Mapping[str, Any], constrained: bool = False) -> dict:
    """Physical values of every sampled site of ``model`` from its latent sites.

    ``latents`` are unconstrained (as samplers and grids see them) unless
    ``constrained`` (values in each latent's support, as guides return them).
    Pure and jittable.
    """
    names = list(model.sites())
    if constrained:
        tr = handlers.trace(handlers.substitute(model.sample_params, data=dict(latents))).get_trace()
        return {k: tr[k]["value"] for k in names}
    values = constrain_fn(model.sample_params, (), {}, latents, return_deterministic=True)
    return {k: values[k] for k in names}


def unconstrained_from_physical(model, params: Mapping[str, Any]) -> dict:
    """Unconstrained latent values (keyed by latent site) that give the physical ``params``."""
    out = {}
    for name, site in model.sites().items():
        value = jnp.asarray(params[name])
        latent = site.to_latent(value) if site.to_latent is not None else value
        out[site.latent] = biject_to(site.support).inv(latent)
    return out
