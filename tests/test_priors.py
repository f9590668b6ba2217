"""Priors: O(1) latents, physical sites, overrides by name, card specs."""

import jax
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

from starmodels.priors import prior_from_spec


def test_location_scale_priors_sample_standard_latents(binary):
    tr = handlers.trace(handlers.seed(binary.model, 0)).get_trace()
    base = tr["optics.zernike_base"]
    assert base["type"] == "sample" and not base["is_observed"]
    assert isinstance(base["fn"].base_dist, dist.Normal)
    assert float(base["fn"].base_dist.scale.mean()) == 1.0
    assert tr["optics.zernike"]["type"] == "deterministic"
    assert tr["optics.zernike"]["value"].shape == (7,)


def test_prior_predictive_has_the_prior_in_physical_units(binary):
    draws = Predictive(binary.model.sample_params, num_samples=4000)(jax.random.PRNGKey(1))
    sep = np.asarray(draws["source.separation"])
    assert np.allclose(np.log(sep).mean(), -2.1, atol=0.03)
    assert np.allclose(np.log(sep).std(), 0.3, atol=0.03)
    z = np.asarray(draws["optics.zernike"])
    assert np.allclose(z.std(axis=0), 40.0, rtol=0.06)


def test_override_prior_by_site_name(binary):
    model = binary.model.with_priors({"source.position_angle": dist.Normal(45.0, 0.5),
                                      "source.contrast": {"dist": "Uniform", "low": 1, "high": 2}})
    draws = Predictive(model.sample_params, num_samples=2000)(jax.random.PRNGKey(2))
    pa, c = np.asarray(draws["source.position_angle"]), np.asarray(draws["source.contrast"])
    assert abs(pa.mean() - 45.0) < 0.1 and abs(pa.std() - 0.5) < 0.05
    assert 1 <= c.min() and c.max() <= 2
    assert binary.model.priors()["source.position_angle"].loc == 90.0  # original untouched


def test_fixing_a_parameter_removes_its_site(binary):
    model = binary.model.with_fixed({"optics.zernike": np.zeros(7)})
    assert "optics.zernike" not in model.priors()
    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert "optics.zernike_base" not in tr


def test_unknown_site_name_lists_valid_names(binary):
    with pytest.raises(KeyError, match="source.separation"):
        binary.model.with_priors({"source.sep": dist.Normal(0, 1)})
    with pytest.raises(TypeError, match="with_fixed"):
        binary.model.with_priors({"source.x": 0.1})


def test_card_specs_and_errors():
    d = prior_from_spec({"dist": "LogNormal", "loc": 0.0, "scale": 0.5})
    assert isinstance(d, dist.LogNormal)
    with pytest.raises(ValueError, match="unknown dist"):
        prior_from_spec({"dist": "Cauchy", "loc": 0, "scale": 1}, "a")
    with pytest.raises(ValueError, match="missing"):
        prior_from_spec({"dist": "Normal", "loc": 0}, "a")
