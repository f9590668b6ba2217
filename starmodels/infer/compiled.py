"""Compiled programs reused across fits: a model's arrays become arguments, its structure the key.

A runner splits a model into its arrays (PSF images, Zernike bases, prior
parameters: passed to compiled programs as device arguments, not baked in
as constants) and its static structure. Programs are built once per
(runner, structure, options) and kept in a small in-process cache, so a
second ``fit()`` of the same model (or one with other prior values) on data
of the same shape runs without tracing or compiling again; across processes
JAX's persistent compilation cache (:mod:`starmodels.startup`) does the same.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import equinox as eqx
import jax

MAX_PROGRAMS = 32  # compiled runners kept per process (least recently used dropped first)

_programs: OrderedDict = OrderedDict()


def _hashable(leaf) -> Hashable:
    try:
        hash(leaf)
        return leaf
    except TypeError:
        return ("unhashable", type(leaf).__name__, id(leaf))


class Bound:
    """``model`` split into ``arrays`` (arguments of compiled programs) and its static structure."""

    def __init__(self, model):
        self.arrays, self.static = eqx.partition(model, eqx.is_array)
        leaves, treedef = jax.tree_util.tree_flatten(self.static)
        shapes = tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree_util.tree_leaves(self.arrays))
        self.key = (treedef, tuple(_hashable(x) for x in leaves), shapes)

    def model(self, arrays):
        """The model rebuilt from (possibly traced) ``arrays``."""
        return eqx.combine(arrays, self.static)

    def program(self, arrays, data=None):
        """The model's NumPyro program with its arrays as an argument."""
        return self.model(arrays)(data)


def cached(kind: str, key: Hashable, build: Callable[[], object]) -> tuple[object, bool]:
    """The program object cached under ``(kind, key)``, building it with ``build()`` if absent.

    Returns ``(program, reused)``.
    """
    k = (kind, key)
    if k in _programs:
        _programs.move_to_end(k)
        return _programs[k], True
    obj = build()
    _programs[k] = obj
    while len(_programs) > MAX_PROGRAMS:
        _programs.popitem(last=False)
    return obj, False


def clear() -> None:
    """Forget every compiled runner of this process."""
    _programs.clear()
