"""The runner registry: every inference method registers its name, options and run function.

A method is one module that calls :func:`register`; :func:`starmodels.fit`
looks it up by name, checks every option before any work (unknown names,
types, ranges), and gets back one result kind, :class:`RunResult`. Options
use one vocabulary across methods: ``num_draws``, ``num_warmup``,
``num_chains``, ``num_steps``, ``seed``, ``progress``, ...

Adding a method::

    from starmodels.infer.registry import Option, RunResult, register
    from starmodels.infer import options as check

    @register("mymethod", [Option("num_draws", 1000, "draws", check.positive_int)])
    def run(model, data, opts) -> RunResult: ...
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starmodels.infer import options as check

_BUILTIN = {
    "nuts": "starmodels.infer.nuts",
    "svi": "starmodels.infer.svi",
    "grid": "starmodels.infer.grid",
    "amortized": "starmodels.infer.amortized",
}
# Old option names, still accepted with a FutureWarning.
ALIASES = {"samples": "num_draws", "draws": "num_draws", "warmup": "num_warmup", "chains": "num_chains",
           "steps": "num_steps", "restarts": "num_restarts", "points": "num_points"}


class OptionError(ValueError):
    """An option of a fit is unknown or out of range; the message lists every problem."""


class FitError(RuntimeError):
    """The fit ran but failed (e.g. the optimisation diverged); the message says what to change."""


@dataclass(frozen=True)
class Option:
    """One option of a runner: its name, default, what it means (with units) and its check.

    ``default`` may be a zero-argument callable, evaluated when the option is
    left out (e.g. one chain per device).
    """

    name: str
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None

    def resolve_default(self):
        """The default value (calling it if it is a callable)."""
        return self.default() if callable(self.default) else self.default


COMMON = (
    Option("seed", 0, "seed of every random number (same seed, same numbers)", check.seed_value),
    Option("progress", True, "show a progress bar", check.boolean),
)


@dataclass
class RunResult:
    """What every runner returns.

    ``draws``: physical site -> array (chain, draw, *site shape);
    ``meta``: how they were made, with at least ``method``,
    ``compile_seconds`` and ``run_seconds``; ``sample_stats``: per-draw
    statistics named as ArviZ expects (MCMC only).
    """

    draws: dict[str, np.ndarray]
    meta: dict
    sample_stats: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Runner:
    """A registered inference method."""

    name: str
    run: Callable[[Any, np.ndarray, dict], RunResult]
    options: dict[str, Option] = field(default_factory=dict)
    doc: str = ""
    check: Callable[[Any, dict], list[str]] | None = None

    def check_model(self, model, opts: dict) -> None:
        """Checks of options against each other and against ``model`` (no array work); OptionError."""
        problems = self.check(model, opts) if self.check is not None else []
        if problems:
            raise OptionError(f"fit(method={self.name!r}): " + "; ".join(problems))

    def resolve(self, given: Mapping[str, Any]) -> dict:
        """Every option of this runner: given values checked, defaults filled; :class:`OptionError` else."""
        values, problems = {}, []
        for key, value in given.items():
            name = ALIASES.get(key, key) if key not in self.options else key
            if name != key:
                if name in given:
                    problems.append(f"{key!r} and {name!r} are the same option; give only {name!r}")
                    continue
                warnings.warn(f"option {key!r} is now called {name!r}", FutureWarning, stacklevel=4)
            if name not in self.options:
                problems.append(self._unknown(key, name))
                continue
            values[name] = value
        for name, opt in self.options.items():
            if name not in values:
                values[name] = opt.resolve_default()
            elif opt.check is not None and (msg := opt.check(values[name])) is not None:
                problems.append(f"{name} {msg}")
        if problems:
            raise OptionError(f"fit(method={self.name!r}): " + "; ".join(problems))
        return values


    def _unknown(self, key: str, name: str) -> str:
        """A sentence about an unknown option: where it belongs, what is close, what there is."""
        close = [_RELATED[name]] if _RELATED.get(name) in self.options else \
            difflib.get_close_matches(name, self.options, n=1)
        owners = sorted(m for m, r in _RUNNERS.items() if name in r.options)
        where = f" (an option of {owners})" if owners else ""
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"unknown option {key!r} for method {self.name!r}{where}{hint} "
                f"(options: {sorted(self.options)})")


_RUNNERS: dict[str, Runner] = {}
_RELATED = {"num_chains": "num_restarts", "num_restarts": "num_chains", "num_warmup": "num_steps"}


def register(name: str, options: Sequence[Option] = (), doc: str | None = None,
             check: Callable[[Any, dict], list[str]] | None = None):
    """Decorator: register ``run(model, data, opts) -> RunResult`` as method ``name``.

    The common options (``seed``, ``progress``) are added to ``options``.
    ``check(model, opts)`` returns problems of the options together or with
    this model (e.g. a grid on too many parameters); it must do no array work.
    """
    def deco(run):
        opts = {o.name: o for o in (*COMMON, *options)}
        _RUNNERS[name] = Runner(name, run, opts, doc or (run.__doc__ or "").strip(), check)
        return run
    return deco


def _load_builtins() -> None:
    for module in _BUILTIN.values():
        importlib.import_module(module)


def get_runner(name: str) -> Runner:
    """The runner registered as ``name``; ``ValueError`` listing the methods if there is none."""
    if name not in _RUNNERS and name in _BUILTIN:
        importlib.import_module(_BUILTIN[name])
    if name not in _RUNNERS:
        raise ValueError(f"method must be one of {methods()}, got {name!r}")
    return _RUNNERS[name]


def methods() -> list[str]:
    """Names of every registered method (the built-in ones are loaded first)."""
    _load_builtins()
    return sorted(_RUNNERS)
