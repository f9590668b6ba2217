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
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

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
        return check_prior(spec, name)
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
    try:
        values = [jnp.asarray(spec[a], dtype=float) for a in args]
    except (TypeError, ValueError) as err:
        raise ValueError(f"prior for {name!r} ({family}): arguments must be numbers or lists of "
                         f"numbers ({err})") from None
    try:
        prior = cls(*values, validate_args=False)  # our check below names the site
    except ValueError as err:  # families that build other distributions inside still validate those
        raise ValueError(f"prior for {name!r} ({family}): {err}") from None
    return check_prior(prior, name)


def check_prior(prior: dist.Distribution, name: str = "?") -> dist.Distribution:
    """Return ``prior`` if its parameters are valid (finite, in range, non-empty support); else ValueError.

    numpyro does not validate distribution arguments by default, so a
    ``Uniform(1, 0)`` or a ``Normal(0, -1)`` would otherwise give NaN
    posteriors long after the fit started.
    """
    if not isinstance(prior, dist.Distribution):
        raise TypeError(f"prior for {name!r} must be a numpyro distribution, got {type(prior).__name__}")
    problems = []
    for arg, constraint in getattr(prior, "arg_constraints", {}).items():
        value = getattr(prior, arg, None)
        if value is None or not hasattr(value, "shape") and not isinstance(value, int | float):
            continue
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number):
            continue
        if not np.all(np.isfinite(arr)):
            problems.append(f"{arg} is not finite ({arr.tolist()})")
        elif not isinstance(constraint, constraints._Dependent) and not np.all(np.asarray(constraint(arr))):
            problems.append(f"{arg} = {arr.tolist()} is outside {constraint}")
    for lo, hi in (("low", "high"),):
        if hasattr(prior, lo) and hasattr(prior, hi):
            low, high = np.asarray(getattr(prior, lo)), np.asarray(getattr(prior, hi))
            if np.any(low >= high):
                problems.append(f"empty support: {lo} = {low.tolist()} >= {hi} = {high.tolist()}")
    if problems:
        raise ValueError(f"prior for {name!r} ({type(prior).__name__}): " + "; ".join(problems))
    return prior


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


_STANDARD_SUPPORT = {dist.Normal: constraints.real, dist.LogNormal: constraints.real,
                     dist.Uniform: constraints.unit_interval}


def latent_site(name: str, prior: dist.Distribution):
    """The sample site that carries parameter ``name`` and its support: ``(site, constraint)``.

    Pure Python (no array work), so model descriptions are free to build.
    """
    support = _STANDARD_SUPPORT.get(type(prior))
    if support is None:
        return name, prior.support
    return name + BASE_SUFFIX, support


def to_latent(prior: dist.Distribution, value):
    """The value of the latent sample site (in its support) that gives physical ``value``.

    The inverse of :func:`sample_param`'s map: ``(x - loc) / scale`` for a
    Normal, ``(log x - loc) / scale`` for a LogNormal, ``(x - low) / (high - low)``
    for a Uniform, the value itself otherwise.
    """
    x = jnp.asarray(value)
    if type(prior) is dist.Normal:
        return (x - prior.loc) / prior.scale
    if type(prior) is dist.LogNormal:
        base = prior.base_dist
        return (jnp.log(x) - base.loc) / base.scale
    if type(prior) is dist.Uniform:
        return (x - prior.low) / (prior.high - prior.low)
    return x
