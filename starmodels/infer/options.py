"""Option checks shared by the runners: each returns ``None`` when a value is fine, else what is wrong."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

Check = Callable[[object], "str | None"]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def positive_int(v) -> str | None:
    """An integer >= 1."""
    return None if _is_int(v) and v >= 1 else f"must be an integer >= 1, got {v!r}"


def seed_value(v) -> str | None:
    """A non-negative integer below 2**32 (the same seed gives the same numbers)."""
    if _is_int(v) and 0 <= v < 2**32:
        return None
    return f"must be a non-negative integer below 2**32, got {v!r}"


def positive_float(v) -> str | None:
    """A finite real number > 0."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
        return None
    return f"must be a finite number > 0, got {v!r}"


def non_negative_float(v) -> str | None:
    """A finite real number >= 0."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0:
        return None
    return f"must be a finite number >= 0, got {v!r}"


def open_unit(v) -> str | None:
    """A real number strictly between 0 and 1."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v < 1:
        return None
    return f"must be a number strictly between 0 and 1, got {v!r}"


def boolean(v) -> str | None:
    """True or False."""
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def one_of(*choices) -> Check:
    """One of ``choices``."""
    def check(v):
        return None if v in choices else f"must be one of {list(choices)}, got {v!r}"
    check.__doc__ = f"One of {list(choices)}."
    return check


def int_between(lo: int, hi: int) -> Check:
    """An integer in [lo, hi]."""
    def check(v):
        return None if _is_int(v) and lo <= v <= hi else f"must be an integer from {lo} to {hi}, got {v!r}"
    check.__doc__ = f"An integer from {lo} to {hi}."
    return check


def optional(inner: Check) -> Check:
    """None, or a value that passes ``inner``."""
    def check(v):
        return None if v is None else inner(v)
    check.__doc__ = f"None or: {inner.__doc__}"
    return check
