"""Diffuse sky models: smooth backgrounds as Gaussian processes written as NumPyro programs.

:mod:`starmodels.sky.correlated_field` gives a log-normal sky whose power
spectrum (a power law times a smooth learned deviation) and overall
fluctuation level are inferred together with the field.
"""

from starmodels.sky.correlated_field import (
    FieldGrid,
    FieldPriors,
    correlated_field,
    empirical_power_spectrum,
    lognormal,
    model_covariance,
    model_power_spectrum,
    sample_correlated_field,
)

__all__ = ["FieldGrid", "FieldPriors", "correlated_field", "empirical_power_spectrum", "lognormal",
           "model_covariance", "model_power_spectrum", "sample_correlated_field"]
