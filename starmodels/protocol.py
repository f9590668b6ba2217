"""The model protocol: everything an inference runner may ask of a model, and nothing more.

A runner (NUTS, SVI, grid, amortized, ...) sees a model only through
:class:`Model`. It never imports a model class and never reaches into a
model's parts (its noise, optics, ...). Anything with these members is a
model; no subclassing is needed::

    name: str
    shape: tuple                 # shape of the data array the model explains
    __call__(data=None)          # the NumPyro program; the data are observed at site "obs"
    sample_params() -> dict      # the prior part of the program: physical values by site name
    render(params) -> array      # pure, jittable: expected data for physical parameter values
    log_likelihood(params, data) # pointwise log-likelihood, one value per datum (data's shape)
    sites() -> dict[str, Site]   # the sampled sites, in program order
    check_data(data) -> ndarray  # validated data ready to fit, else DataError listing every problem

Optional: ``blocks() -> Blocks`` when the data's first axis holds independent
blocks (images) that a grid runner can integrate one at a time and an
amortized encoder can map one at a time; ``alternate_modes(params) -> {name:
params}`` giving, for physical values, the values related to them by a known
(near-)symmetry of the likelihood, which a mode search then also checks.

This follows numpyro's own split between the program and ``initialize_model``
/ ``potential_fn``: runners build potentials from the program and use the
site list for shapes, supports and labels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpyro.distributions import constraints


class DataError(ValueError):
    """The data cannot be fitted by this model; the message lists every problem."""


@dataclass(frozen=True)
class Site:
    """One sampled parameter of a model.

    ``name`` is the physical site (``source.flux``), in the units its
    component documents; ``latent`` the NumPyro sample site that carries it
    (``source.flux_base`` when the prior is sampled in a standard form, else
    ``name``) and ``support`` that latent's support. ``shape`` is the shape of
    one draw of the physical value (a per-image site of n images: ``(n,)``).
    ``labels`` name the elements of a 1-D vector site (e.g. Noll indices).
    ``to_latent`` maps a physical value to the latent site's value (None: the
    latent is the physical value); runners use it to start from given
    physical values (e.g. a known symmetry of the likelihood).
    """

    name: str
    latent: str
    shape: tuple[int, ...]
    support: constraints.Constraint = field(compare=False)
    labels: tuple | None = None
    to_latent: Callable | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Blocks:
    """The data's first axis holds ``count`` independent blocks (images).

    ``resize(k)`` returns the same model for ``k`` blocks: its per-block
    sites carry a leading block axis. ``shared`` lists sampled sites common
    to every block; when it is not empty the blocks are not independent and
    block-wise runners (grid, amortized) refuse the model. ``plate`` names the
    NumPyro plate over blocks in the program (a guide must use the same).
    """

    count: int
    resize: Callable[[int], Any]
    shared: tuple[str, ...] = ()
    plate: str = "image"


@runtime_checkable
class Model(Protocol):
    """What every model offers the runners (see the module docstring)."""

    name: str
    shape: tuple

    def __call__(self, data=None) -> Any:
        """The NumPyro program: priors, then the likelihood of ``data`` at site ``obs``."""

    def sample_params(self) -> dict:
        """Sample every free parameter inside a NumPyro program; physical values by site name."""

    def render(self, params: Mapping[str, Any]) -> Any:
        """Expected data (e.g. counts per pixel) for physical parameter values; pure and jittable."""

    def log_likelihood(self, params: Mapping[str, Any], data) -> Any:
        """Log-likelihood of each datum (same shape as ``data``) at physical parameter values."""

    def sites(self) -> dict[str, Site]:
        """The sampled sites in program order."""

    def check_data(self, data) -> np.ndarray:
        """``data`` validated and ready to fit, or :class:`DataError` listing every problem."""


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def numeric_data(data, model_name: str) -> np.ndarray:
    """``data`` as a float64 array, or :class:`DataError` if it is not real numbers a fit can use.

    Refused: non-numeric or ragged input (strings, objects, a ``(data, truth)`` tuple), complex values
    (their imaginary part would be dropped silently) and finite values beyond the float32 range
    (they would turn into inf in single precision).
    """
    try:
        raw = np.asarray(data)
        if np.iscomplexobj(raw):
            raise DataError(f"cannot fit {model_name!r}: complex-valued data (dtype {raw.dtype}); pass "
                            "np.real(data) or np.abs(data) explicitly")
        arr = raw.astype(float)
    except (TypeError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot fit {model_name!r}: data must be an array of numbers, got "
                        f"{type(data).__name__} ({str(err).splitlines()[0][:120]})") from None
    big = np.isfinite(arr) & (np.abs(arr) > _FLOAT32_MAX)
    if big.any():
        raise DataError(f"cannot fit {model_name!r}: {int(big.sum())} pixel(s) exceed the float32 range "
                        f"(|value| > {_FLOAT32_MAX:.3g}); rescale the data")
    return arr


def check_model(model) -> Model:
    """Return ``model`` if it satisfies :class:`Model`, else raise ``TypeError`` naming what is missing."""
    if isinstance(model, type):
        raise TypeError(f"fit needs a model instance, got the class {model.__name__}")
    needed = ("name", "shape", "__call__", "sample_params", "render", "log_likelihood", "sites", "check_data")
    missing = [m for m in needed if not hasattr(model, m)]
    if missing:
        raise TypeError(f"{type(model).__name__} is not a starmodels model: it lacks {missing} "
                        "(see starmodels.protocol.Model)")
    return model


def blocks_of(model) -> Blocks | None:
    """The model's independent blocks, or None when it declares none (one block: the whole data)."""
    get = getattr(model, "blocks", None)
    return None if get is None else get()


def labels_of(model) -> dict[str, list]:
    """Element labels of vector sites, by physical site name."""
    return {k: list(s.labels) for k, s in model.sites().items() if s.labels is not None}
