"""The base of every model component: named parameters, each sampled or fixed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from starmodels.priors import prior_from_spec


def _as_param(name: str, value: Any):
    if isinstance(value, dist.Distribution | Mapping):
        prior = prior_from_spec(value, name)
        # numbers become arrays: prior values are then arguments of compiled programs, not constants,
        # so a model with other prior values reuses the compiled runner
        return jax.tree_util.tree_map(
            lambda x: jnp.asarray(x) if isinstance(x, int | float) and not isinstance(x, bool) else x, prior)
    try:  # numpy in JAX's float dtype: no device-side conversion (no XLA compilation) at build time
        arr = np.asarray(value, dtype=jax.dtypes.canonicalize_dtype(np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"fixed value of {name!r} must be a number or an array of numbers, got "
                         f"{value!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"fixed value of {name!r} is not finite: {value!r}")
    return arr


def _device(param):
    """A checked parameter ready for JAX: fixed numpy values become arrays; priors pass through."""
    return param if isinstance(param, dist.Distribution) else jnp.asarray(param)


def _shape(param) -> tuple:
    """Shape of one value of a parameter: a prior's batch + event shape, or a fixed array's shape."""
    if isinstance(param, dist.Distribution):
        return tuple(param.batch_shape) + tuple(param.event_shape)
    return tuple(np.shape(param))


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
        self.params = {k: _device(_as_param(f"{self.role}.{k}", params[k])) for k in self.param_names}

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
        full = f"{self.role}.{name}"
        param = _as_param(full, value)
        old, got = _shape(self.params[name]), _shape(param)
        if old != got:
            raise ValueError(f"{full} takes values of shape {old}; the new "
                             f"{'prior' if isinstance(param, dist.Distribution) else 'value'} has shape "
                             f"{got}")
        return self._rebuild({**self.params, name: _device(param)})

    def _rebuild(self, params: dict) -> Component:
        """A copy with ``params`` (already checked); components with derived fields override this."""
        return eqx.tree_at(lambda c: c.params, self, params)
