"""The base of every model component: named parameters, each sampled or fixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpyro.distributions as dist

from starmodels.priors import prior_from_spec


def _as_param(name: str, value: Any):
    if isinstance(value, dist.Distribution | Mapping):
        return prior_from_spec(value, name)
    arr = jnp.asarray(value, dtype=float)
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"fixed value of {name!r} is not finite: {value!r}")
    return arr


class Component(eqx.Module):
    """A model piece whose parameters are either priors (sampled) or fixed arrays.

    Subclasses set ``role`` (the site-name prefix: ``source``, ``optics``, ...)
    and ``param_names``; ``params`` maps each local name to a numpyro
    distribution (sampled) or an array (held fixed).
    """

    params: dict
    role: ClassVar[str] = "component"
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Mapping[str, Any]):
        unknown = sorted(set(params) - set(self.param_names))
        missing = sorted(set(self.param_names) - set(params))
        if unknown or missing:
            raise ValueError(
                f"{type(self).__name__}: parameters are {list(self.param_names)}; "
                f"unknown {unknown}, missing {missing}"
            )
        self.params = {k: _as_param(f"{self.role}.{k}", params[k]) for k in self.param_names}

    def priors(self) -> dict[str, dist.Distribution]:
        """Sampled parameters: local name -> prior."""
        return {k: v for k, v in self.params.items() if isinstance(v, dist.Distribution)}

    def fixed(self) -> dict[str, jnp.ndarray]:
        """Fixed parameters: local name -> value."""
        return {k: v for k, v in self.params.items() if not isinstance(v, dist.Distribution)}

    def labels(self) -> dict[str, list]:
        """Element labels of vector parameters (e.g. Noll indices), by local name."""
        return {}

    def replace(self, name: str, value: Any) -> Component:
        """Return a copy with parameter ``name`` given a new prior or fixed value."""
        if name not in self.param_names:
            raise KeyError(
                f"{self.role} has no parameter {name!r}; it has {list(self.param_names)}"
            )
        new = dict(self.params)
        new[name] = _as_param(f"{self.role}.{name}", value)
        return eqx.tree_at(lambda c: c.params, self, new)
