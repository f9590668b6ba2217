"""Inference runners behind one front door, :func:`fit`."""

from starmodels.infer.fit import fit

__all__ = ["fit"]
