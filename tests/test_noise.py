"""Noise models: log-probabilities against direct formulas, and clear errors on bad data."""

import numpy as np
import pytest
from scipy import stats

from starmodels.forward import DataError
from starmodels.noise import Gaussian, Poisson, PoissonGaussian

from .conftest import small_model

RNG = np.random.default_rng(0)
MU = RNG.uniform(0.5, 50.0, size=(12, 12))


def test_poisson_log_prob_matches_formula():
    k = RNG.poisson(MU).astype(float)
    lp = np.asarray(Poisson().log_prob(MU, k))
    np.testing.assert_allclose(lp, stats.poisson.logpmf(k, MU), rtol=2e-5, atol=1e-4)


def test_gaussian_log_prob_matches_formula_with_sigma_map():
    sigma = RNG.uniform(0.5, 3.0, size=MU.shape)
    x = MU + sigma * RNG.normal(size=MU.shape)
    lp = np.asarray(Gaussian(sigma).log_prob(MU, x))
    np.testing.assert_allclose(lp, stats.norm.logpdf(x, MU, sigma), rtol=2e-5, atol=1e-4)


def test_poisson_gaussian_log_prob_is_ccd_equation():
    x = MU + RNG.normal(size=MU.shape) * 4
    lp = np.asarray(PoissonGaussian(3.0).log_prob(MU, x))
    np.testing.assert_allclose(lp, stats.norm.logpdf(x, MU, np.sqrt(MU + 9.0)), rtol=2e-5, atol=1e-4)


def test_poisson_gaussian_simulation_has_exact_variance():
    import jax

    sims = np.stack([np.asarray(PoissonGaussian(3.0).simulate(jax.random.PRNGKey(i), MU))
                     for i in range(400)])
    ratio = sims.var(axis=0).mean() / (MU + 9.0).mean()
    assert abs(ratio - 1) < 0.05
    assert not np.allclose(sims, np.round(sims))  # read noise makes counts non-integer


def test_masked_pixels_carry_no_weight_and_may_be_nan():
    mask = np.ones(MU.shape, bool)
    mask[3, 4] = False
    k = RNG.poisson(MU).astype(float)
    k_nan = k.copy()
    k_nan[3, 4] = np.nan
    lp_masked = np.asarray(Poisson(mask).log_prob(MU, k_nan))
    assert lp_masked[3, 4] == 0 and np.isfinite(lp_masked).all()
    np.testing.assert_allclose(lp_masked.sum(), np.asarray(Poisson().log_prob(MU, k)).sum()
                               - stats.poisson.logpmf(k[3, 4], MU[3, 4]), rtol=1e-5)
    model = small_model(Poisson(mask))
    assert np.isfinite(model.check_data(k_nan)).all()


@pytest.mark.parametrize("noise, bad, message", [
    (Poisson(), lambda d: d + 0.5, "integer counts"),
    (Poisson(), lambda d: d - d.max() - 1, "non-negative"),
    (Poisson(), lambda d: np.where(np.arange(d.size).reshape(d.shape) == 7, np.nan, d), "non-finite"),
    (PoissonGaussian(3.0), lambda d: np.where(np.arange(d.size).reshape(d.shape) == 7, np.inf, d),
     "non-finite"),
    (Poisson(), lambda d: d[:-1], "shape"),
    (Gaussian(np.zeros((12, 12))), lambda d: d, "sigma must be finite and positive"),
    (Gaussian(np.ones((5, 5))), lambda d: d, "sigma shape"),
    (Poisson(np.ones((3, 3), bool)), lambda d: d, "mask shape"),
])
def test_bad_data_raises_clear_error_before_sampling(noise, bad, message):
    model = small_model(noise)
    data = RNG.poisson(np.full(model.shape, 5.0)).astype(float)
    with pytest.raises(DataError, match=message):
        model.check_data(bad(data))


def test_every_problem_is_reported_at_once():
    model = small_model(Poisson())
    data = np.full(model.shape, 2.5)
    data[0, 0] = -1.5
    data[1, 1] = np.nan
    with pytest.raises(DataError) as err:
        model.check_data(data)
    for words in ("non-finite", "non-negative", "integer"):
        assert words in str(err.value)


def test_bad_noise_settings_are_rejected():
    with pytest.raises(ValueError, match="read_sigma must be positive"):
        PoissonGaussian(0.0)
    with pytest.raises(ValueError, match="boolean"):
        Poisson(np.ones((3, 3)))
