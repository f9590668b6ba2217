"""Inference runners behind one front door, :func:`fit`, looked up in a registry by method name."""

from starmodels.infer.fit import fit
from starmodels.infer.registry import get_runner, methods


def method_options(method: str) -> dict[str, str]:
    """The options of ``method``: name -> "description (default: value)"."""
    runner = get_runner(method)
    out = {}
    for name, opt in runner.options.items():
        default = "computed" if callable(opt.default) else repr(opt.default)
        out[name] = f"{opt.doc} (default: {default})"
    return out


__all__ = ["fit", "method_options", "methods"]
