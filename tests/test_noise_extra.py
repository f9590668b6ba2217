"""Error-map, variable and Student-t noise: log-densities vs scipy, masks, simulated variances, checks."""

import starmodels  # noqa: F401, I001  (first: configures JAX)

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer.util import log_density
from scipy import stats

from starmodels.forward import DataError
from starmodels.noise import ErrGaussian, StudentT, VariableGaussian

from .conftest import SMALL_TRUTH, small_model

RNG = np.random.default_rng(1)
SHAPE = (12, 12)
MU = RNG.uniform(-5.0, 60.0, size=SHAPE)  # negative values test |mu|
ERR = RNG.uniform(0.5, 3.0, size=SHAPE)
MASK = np.ones(SHAPE, bool)
MASK[3, 4] = MASK[7, 0] = False
B, S, DF = 1.7, 0.8, 4.5

# (noise model, its parameter values, per-pixel scale, scipy family)
CASES = {
    "err_sigma": (lambda m=None: ErrGaussian(ERR, mask=m), {}, ERR, "norm"),
    "err_variance": (lambda m=None: ErrGaussian(variance=ERR**2, mask=m), {}, ERR, "norm"),
    "variable": (lambda m=None: VariableGaussian(B, S, mask=m), {}, np.sqrt(B**2 + S * np.abs(MU)), "norm"),
    "t_map": (lambda m=None: StudentT(DF, sigma=ERR, mask=m), {}, ERR, "t"),
    "t_variable": (lambda m=None: StudentT(DF, b=B, s=S, mask=m), {}, np.sqrt(B**2 + S * np.abs(MU)), "t"),
    "t_map_floor": (lambda m=None: StudentT(dist.Gamma(2.0, 0.1), variance=ERR**2, b=B, mask=m),
                    {"df": DF}, np.sqrt(ERR**2 + B**2), "t"),
}


def scipy_logpdf(family, x, scale):
    if family == "norm":
        return stats.norm.logpdf(x, MU, scale)
    return stats.t.logpdf(x, DF, MU, scale)


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_prob_matches_scipy(case):
    make, p, scale, family = CASES[case]
    x = MU + scale * RNG.standard_t(3.0, size=SHAPE)
    lp = np.asarray(make().log_prob(MU, x, p))
    np.testing.assert_allclose(lp, scipy_logpdf(family, x, scale), rtol=2e-5, atol=1e-4)


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_pixels_contribute_exactly_nothing(case):
    make, p, scale, family = CASES[case]
    noise = make(MASK)
    x = MU + scale * RNG.normal(size=SHAPE)
    wild, wild_mu = x.copy(), MU.copy()
    wild[3, 4], wild[7, 0], wild_mu[3, 4] = 1e6, -1e6, 5e5

    def total(data, mu):  # the numpyro program's likelihood site, as used by the samplers
        return float(log_density(lambda d: noise.observe(jnp.asarray(mu), d, {**noise.fixed(), **p}),
                                 (jnp.asarray(data),), {}, {})[0])

    lp = np.asarray(noise.log_prob(MU, x, p))
    assert lp[3, 4] == 0 and lp[7, 0] == 0
    assert np.asarray(noise.log_prob(wild_mu, wild, p)).sum() == lp.sum()
    assert total(wild, wild_mu) == total(x, MU)
    np.testing.assert_allclose(lp.sum(), scipy_logpdf(family, x, scale)[MASK].sum(), rtol=1e-5)


def test_nan_error_map_under_the_mask_keeps_gradients_finite():
    err = ERR.copy()
    err[3, 4] = np.nan
    noise = StudentT(dist.Gamma(2.0, 0.1), sigma=err, b=dist.HalfNormal(1.0), s=dist.HalfNormal(1.0),
                     mask=MASK)
    data = noise.fill(MU + ERR * RNG.normal(size=SHAPE))
    grad = jax.grad(lambda q: noise.log_prob(MU, data, q).sum())({"df": 3.0, "b": 0.5, "s": 0.2})
    assert all(np.isfinite(float(g)) for g in grad.values())
    mu = np.where(MASK, MU, 0.0)  # a zero variance b^2 + s |mu| under the mask
    grad = jax.grad(lambda q: VariableGaussian(1.0, 0.5, mask=MASK).log_prob(mu, data, q).sum())(
        {"b": 0.0, "s": 0.5})
    assert all(np.isfinite(float(g)) for g in grad.values())


@pytest.mark.parametrize("case", sorted(CASES))
def test_simulated_variance_per_pixel(case):
    """2000 draws: the mean variance ratio is within 2 % of 1 and every pixel's within 20 %.

    The standard error of one pixel's sample variance is sqrt((2 + excess kurtosis) / 2000): 3 % for the
    Gaussians and 4 % for Student-t with df = 10 (excess kurtosis 1), so 20 % is 5 standard errors; the
    mean over 144 pixels has a standard error of 0.4 %.
    """
    make, p, scale, family = CASES[case]
    noise = make()
    if family == "t":
        p = {**p, "df": 10.0}  # finite variance scale^2 * df / (df - 2)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    sims = np.asarray(jax.vmap(lambda k: noise.simulate(k, jnp.asarray(MU), p))(keys), dtype=float)
    want = scale**2 * (10.0 / 8.0 if family == "t" else 1.0)
    ratio = sims.var(axis=0) / want
    assert abs(ratio.mean() - 1) < 0.02
    assert np.abs(ratio - 1).max() < 0.2
    assert np.abs(sims.mean(axis=0) - MU).max() < 5 * np.sqrt(want.max() / 2000)


def test_problems_name_bad_error_map_values():
    err = ERR.copy()
    err[3:6, 4:8] = 0.0  # 12 zero pixels used ...
    err[8:10, 4:8] = 0.0  # ... and 8 masked
    err[0, 1], err[2, 2], err[11, 11] = -1.0, np.nan, np.inf
    err[10, 0] = np.nan  # masked
    mask = np.ones(SHAPE, bool)
    mask[8:10, 4:8] = mask[10, 0] = False
    probs = ErrGaussian(err, mask=mask).problems(MU)
    assert "ERR has 12 zero pixel(s) inside the mask, first at (3, 4)" in probs
    assert "ERR has 1 negative pixel(s) inside the mask, first at (0, 1)" in probs
    assert "ERR has 2 non-finite (NaN/inf) pixel(s) inside the mask, first at (2, 2)" in probs
    assert len(probs) == 3
    # the same bad values under the mask are no problem; a variance map is called VAR (or its name)
    assert ErrGaussian(err, mask=mask & (err > 0) & np.isfinite(err)).problems(MU) == []
    named = ErrGaussian(variance=err, name="VAR_RNOISE").problems(MU)
    assert named[0] == "VAR_RNOISE has 3 non-finite (NaN/inf) pixel(s), first at (2, 2)"
    assert StudentT(3.0, variance=err).problems(MU)[1].startswith("VAR has")


@pytest.mark.parametrize("noise", [ErrGaussian(np.ones((5, 5))), StudentT(3.0, sigma=np.ones((12, 13)))])
def test_problems_catch_error_map_shape_mismatch(noise):
    assert noise.problems(MU) == [f"ERR shape {noise.err.shape} does not match data shape (12, 12)"]


def test_bad_error_map_is_a_data_error_before_sampling():
    err = np.ones(SHAPE)
    err[5, 6] = 0.0
    model = small_model(ErrGaussian(err))
    with pytest.raises(DataError, match=r"ERR has 1 zero pixel\(s\), first at \(5, 6\)"):
        model.check_data(MU)


def test_prior_parameters_are_positive_sites_with_documented_names():
    model = small_model(StudentT(dist.Gamma(2.0, 0.1), b=dist.LogNormal(0.0, 0.5), s=dist.HalfNormal(2.0)))
    assert {"noise.df", "noise.b", "noise.s"} <= set(model.sites())
    # the model's own prior sampling (LogNormal b is the deterministic site of the latent noise.b_base)
    draws = numpyro.infer.Predictive(model.sample_params, num_samples=200)(jax.random.PRNGKey(0))
    for name in ("noise.df", "noise.b", "noise.s"):
        assert draws[name].shape == (200,) and (np.asarray(draws[name]) > 0).all(), name
    model = small_model(VariableGaussian(dist.HalfNormal(1.0), dist.Uniform(0.0, 2.0)))
    assert {"noise.b", "noise.s"} <= set(model.sites())
    params = {**SMALL_TRUTH, "noise.b": 1.5, "noise.s": 1.0}
    data = model.simulate(params, seed=1)
    lp, mu = (np.asarray(a) for a in eqx.filter_jit(lambda m, q, d: (m.log_likelihood(q, d), m.render(q)))(
        model, params, model.check_data(data)))
    np.testing.assert_allclose(lp, stats.norm.logpdf(data, mu, np.sqrt(1.5**2 + np.abs(mu))), rtol=1e-4,
                               atol=1e-4)


def test_parameters_are_positive_by_construction():
    with pytest.raises(ValueError, match="noise.b must be positive, but its Normal prior"):
        VariableGaussian(dist.Normal(1.0, 1.0), 1.0)
    with pytest.raises(ValueError, match="noise.b must be positive, got 0.*noise.s must be non-negative"):
        VariableGaussian(0.0, -1.0)
    with pytest.raises(ValueError, match="noise.b takes a single value"):
        VariableGaussian(dist.HalfNormal(np.ones(3)), 1.0)
    VariableGaussian(1.0, 0.0)  # s = 0: constant sigma b
    model = small_model(VariableGaussian(1.0, 1.0))
    with pytest.raises(ValueError, match="noise.s must be positive, but its Normal prior"):
        model.with_priors({"noise.s": dist.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match="noise.b must be positive, got -2"):
        model.with_fixed({"noise.b": -2.0})
    assert "noise.b" in model.with_priors({"noise.b": {"dist": "LogNormal", "loc": 0, "scale": 1}}).priors()
    with pytest.raises(ValueError, match="noise.df must be positive, got 0"):
        StudentT(0.0, sigma=ERR)
    with pytest.raises(ValueError, match="without a sigma= or variance= map, b is the floor"):
        StudentT(3.0, s=1.0)
    StudentT(3.0, sigma=ERR)  # b = 0 is fine with a map
    with pytest.raises(ValueError, match="exactly one of sigma="):
        ErrGaussian()
    with pytest.raises(ValueError, match="exactly one of sigma="):
        StudentT(3.0, sigma=ERR, variance=ERR**2)
    with pytest.raises(ValueError, match="must be a number or a map of numbers"):
        ErrGaussian("ERR")
    with pytest.raises(ValueError, match="boolean"):
        ErrGaussian(ERR, mask=np.ones(SHAPE))
