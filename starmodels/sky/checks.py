"""Small argument checks shared by the sky modules."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np


def is_int(x) -> bool:
    """An integer that is not a bool."""
    return isinstance(x, Integral) and not isinstance(x, bool | np.bool_)


def is_number(x) -> bool:
    """A real number (Python or numpy) that is not a bool."""
    return isinstance(x, Real | np.integer | np.floating) and not isinstance(x, bool | np.bool_)


def shape2(name: str, shape) -> tuple[int, int]:
    """``shape`` as two positive Python ints, or a ValueError naming ``name``."""
    if (not isinstance(shape, tuple | list) or len(shape) != 2 or not all(is_int(s) for s in shape)):
        raise ValueError(f"{name} must be a 2-D shape (rows, cols) of two integers, got {shape!r}")
    if min(shape) < 1:
        raise ValueError(f"{name} must have at least one pixel on each side, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])
