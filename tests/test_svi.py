"""SVI: every guide runs, restarts run in parallel, PSIS k-hat tells good guides from bad."""

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import starmodels as sm
from starmodels.infer.svi import GUIDES
from starmodels.protocol import Site

from .conftest import SMALL_TRUTH


# BNAF is the slowest guide to compile (~1 min): it runs with -m slow
@pytest.mark.parametrize("guide", [pytest.param(g, marks=pytest.mark.slow) if g == "bnaf" else g
                                   for g in sorted(GUIDES)])
def test_each_guide_runs_and_lands_near_the_truth(small, guide):
    model, data = small
    post = sm.fit(model, data, method="svi", guide=guide, num_steps=400, chunk=100, num_draws=200,
                  num_restarts=1, seed=0, progress=False, init="map")
    means = post.mean()
    assert post.meta["guide"] == guide and post.draws()["source.x"].shape == (1, 200)
    assert abs(means["source.log_flux"] - SMALL_TRUTH["source.log_flux"]) < 0.05
    assert np.isfinite(post.meta["final_elbo"])
    table = post.summary()
    assert "r_hat" not in table.columns and "ess_bulk" not in table.columns


def test_restarts_run_in_parallel_and_the_best_elbo_is_kept(small):
    model, data = small
    with pytest.raises(ValueError, match="restarts"):
        sm.fit(model, data, method="svi", num_chains=2)
    post = sm.fit(model, data, method="svi", guide="meanfield", num_steps=300, chunk=100, num_draws=100,
                  num_restarts=2, seed=1, progress=False, init="prior")
    m = post.meta
    assert m["restart_method"] == "parallel" and len(m["restart_elbos"]) == 2
    assert m["final_elbo"] == max(m["restart_elbos"])


@pytest.mark.slow  # by default, tests/test_star_flux.py checks NUTS and mean-field against the exact grid
def test_meanfield_agrees_with_nuts_on_a_gaussian_posterior(small, small_fit):
    model, data = small
    vi = sm.fit(model, data, method="svi", guide="meanfield", num_steps=3000, num_draws=2000,
                num_restarts=1, num_particles=8, seed=2, progress=False)
    nuts_draws, vi_draws = small_fit.flat_draws(), vi.flat_draws()
    for name in nuts_draws:
        sd = nuts_draws[name].std()
        assert abs(vi_draws[name].mean() - nuts_draws[name].mean()) < 0.25 * sd, name
        assert 0.75 < vi_draws[name].std() / sd < 1.25, name
    assert vi.diagnostics()["khat"] < 0.7


def test_round_trip_and_warm_start(small, tmp_path):
    model, data = small
    mf = sm.fit(model, data, method="svi", guide="meanfield", num_steps=400, chunk=100, num_draws=100,
                num_restarts=1, seed=3, progress=False, init="prior")
    back = sm.Posterior.from_netcdf(mf.to_netcdf(tmp_path / "vi.nc"))
    assert back.meta["elbo_trace"] == mf.meta["elbo_trace"] and back.method == "svi"
    fr = sm.fit(model, data, method="svi", guide="fullrank", num_steps=200, chunk=100, num_draws=100,
                num_restarts=1, seed=3, progress=False, warm_start=back)
    assert fr.meta["init"] == "warm_start"
    assert abs(fr.mean()["source.log_flux"] - mf.mean()["source.log_flux"]) < 0.05


class Banana:
    """A toy model written from scratch (no library class): a ~ N(0, 1), b | a ~ N(a^2, 0.1).

    It satisfies the model protocol, so every runner can fit it.
    """

    name = "banana"
    shape = ()

    def sites(self):
        return {k: Site(k, k, (), constraints.real) for k in ("a", "b")}

    def sample_params(self):
        return {"a": numpyro.sample("a", dist.Normal(0.0, 1.0)),
                "b": numpyro.sample("b", dist.Normal(0.0, 3.0))}

    def render(self, params):
        return params["a"] ** 2

    def log_likelihood(self, params, data):
        return dist.Normal(self.render(params), 0.1).log_prob(params["b"])

    def check_data(self, data):
        return np.zeros(())

    def __call__(self, data=None):
        p = self.sample_params()
        numpyro.factor("obs", self.log_likelihood(p, data))


def test_khat_flags_a_bad_guide_on_a_banana():
    assert isinstance(Banana(), sm.Model)
    bad = sm.fit(Banana(), 0.0, method="svi", guide="meanfield", num_steps=100, chunk=50, seed=0,
                 progress=False, init="prior", num_draws=4000, num_restarts=1)
    assert bad.meta["khat"] > 0.7
    assert "unreliable" in bad.diagnostics()["khat_verdict"]


def test_guide_draws_of_a_bounded_prior_are_transformed_once(small):
    """A Uniform prior's latent lives in (0, 1); guide draws must not be squashed a second time."""
    model, _ = small
    bounded = model.with_priors({"source.x": dist.Uniform(-0.1, 0.1)})
    data = bounded.simulate(SMALL_TRUTH, seed=3)
    post = sm.fit(bounded, data, method="svi", guide="meanfield", num_steps=2000, num_draws=2000,
                  num_restarts=1, seed=0, progress=False)
    x = post.draws()["source.x"].ravel()
    assert abs(x.mean() - SMALL_TRUTH["source.x"]) < 4 * x.std()
    assert x.std() > 2e-4  # a doubled transform shrank it to ~1e-4
