"""star_flux (the VI lab): exact grid posterior, NUTS and SVI against it, amortized VI."""

import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import integrate, stats
from scipy.special import gammaln

import starmodels as sm
from starmodels.infer.grid import GridError
from tests.conftest import small_model


@pytest.fixture(scope="module")
def lab():
    z = sm.zoo.load("star_flux")
    data, truth = z.simulate(seed=0)
    return z, data, truth


@pytest.fixture(scope="module")
def grid(lab):
    z, data, truth = lab
    return sm.fit(z.model, data, method="grid", seed=0, truth=truth)


def _grid_moments(post):
    g = post.meta["grid"]
    return np.array(g["mean"]["source.flux"]), np.array(g["sd"]["source.flux"])


@pytest.mark.parametrize("variant", [None, "airy"])
def test_card_follows_the_lab_rule(variant):
    z = sm.zoo.load("star_flux", variant)
    data, truth = z.simulate(seed=1)
    assert data.shape == (16, 15, 15) and truth["source.flux"].shape == (16,)
    mu = np.asarray(z.model.render({"source.flux": np.ones(16)}))  # flux 1 + background
    background = z.card["fixed"]["detector.background"]
    m = 1000.0 / (mu[0] - background).max()
    prior = z.model.priors()["source.flux"]
    assert float(prior.loc) == pytest.approx(m, rel=1e-3)
    assert float(prior.scale) == pytest.approx(0.2 * m, rel=1e-3)
    assert background == pytest.approx(0.3 * m, rel=1e-3)
    again, _ = z.simulate(seed=1)
    assert np.array_equal(data, again)


def test_grid_matches_direct_integration(lab, grid):
    z, data, _ = lab
    psf = np.asarray(z.model.model.optics.psf, float)
    prior = z.model.priors()["source.flux"]
    loc, scale, bg = float(prior.loc), float(prior.scale), z.card["fixed"]["detector.background"]
    mean, sd = _grid_moments(grid)
    for i in (0, 5, 11):
        def log_post(f, img=data[i]):
            mu = f * psf + bg
            return stats.norm.logpdf(f, loc, scale) + np.sum(img * np.log(mu) - mu - gammaln(img + 1))

        peak = log_post(mean[i])
        lo, hi = mean[i] - 12 * sd[i], mean[i] + 12 * sd[i]
        z0, z1, z2 = (integrate.quad(lambda f, k=k, p=peak, lp=log_post: f**k * np.exp(lp(f) - p), lo, hi,
                                     epsabs=0, epsrel=1e-10, limit=200)[0] for k in range(3))
        exact_mean, exact_sd = z1 / z0, np.sqrt(z2 / z0 - (z1 / z0) ** 2)
        assert mean[i] == pytest.approx(exact_mean, abs=1e-3 * exact_sd)
        assert sd[i] == pytest.approx(exact_sd, rel=1e-3)
    table = grid.summary()
    assert np.allclose(table["mean"].values, mean) and grid.diagnostics()["edge_mass"] < 1e-6


def test_nuts_agrees_with_the_grid(lab, grid):
    z, data, _ = lab
    post = sm.fit(z.model, data, method="nuts", seed=2, progress=False, num_chains=2, num_warmup=400,
                  num_draws=1000)
    g_mean, g_sd = _grid_moments(grid)
    draws = post.draws()["source.flux"].reshape(-1, 16)
    assert np.max(np.abs(draws.mean(0) - g_mean) / g_sd) < 0.2
    assert np.all(np.abs(draws.std(0) / g_sd - 1) < 0.2)


def test_meanfield_svi_at_its_defaults_converges_onto_the_grid(lab, grid):
    """The stopping rule ends on the plateau and the refined, averaged guide sits on the exact posterior
    (guide error ~0.04 sd; 20000 draws keep the Monte Carlo error near 0.01 sd)."""
    z, data, _ = lab
    post = sm.fit(z.model, data, method="svi", guide="meanfield", seed=2, progress=False, num_draws=20000)
    assert post.meta["stop_reason"] == "plateau" and post.meta["refine_chunks_run"] == 40
    g_mean, g_sd = _grid_moments(grid)
    draws = post.draws()["source.flux"].reshape(-1, 16)
    assert np.max(np.abs(draws.mean(0) - g_mean) / g_sd) < 0.08
    assert np.all(np.abs(draws.std(0) / g_sd - 1) < 0.06)


def test_amortized_encoder_matches_the_grid_on_held_out_images(lab, tmp_path):
    z, _, _ = lab
    train, _ = z.simulate(seed=100, images=8000)
    test, truth = z.simulate(seed=101, images=64)
    amort = sm.train_amortized(z.model, train, num_steps=1500, batch=128, seed=0, progress=False)
    raw = amort.posterior_for(test, seed=0, importance=False)
    post = amort.posterior_for(test, seed=0)  # importance-corrected (PSIS), the default
    grid = sm.fit(z.model.resize(64), test, method="grid", seed=0)
    g_mean, g_sd = _grid_moments(grid)
    rmse = lambda est: np.sqrt(np.mean((est - truth["source.flux"]) ** 2))  # noqa: E731
    assert rmse(raw.mean()["source.flux"]) <= 1.10 * rmse(g_mean)
    assert post.meta["khat"] < 0.7 and len(post.meta["khat_per_image"]) == 64
    # the correction brings the encoder onto the exact posterior
    corrected = post.draws()["source.flux"][0]
    assert np.max(np.abs(corrected.mean(0) - g_mean) / g_sd) < 0.15
    assert np.all(np.abs(corrected.std(0) / g_sd - 1) < 0.15)
    dev = lambda p: np.mean(np.abs(p.mean()["source.flux"] - g_mean) / g_sd)  # noqa: E731
    assert dev(post) <= dev(raw)
    # saved and loaded: the same encoder; the wrong model is refused
    path = amort.save(tmp_path / "enc.eqx")
    again = sm.Amortizer.load(path, z.model)
    np.testing.assert_array_equal(again.encode(test)[0], amort.encode(test)[0])
    other = z.model.with_fixed({"source.x": 0.1}).with_priors({"source.y": dist.Normal(0, 0.1)})
    with pytest.raises(ValueError, match="shared|sites"):
        sm.Amortizer.load(path, sm.ImagePlate(other.model, ["source.flux", "source.y"], 4))
    whole = path.read_bytes()
    for cut, message in ((200, "truncated"), (len(whole) - 100, "incomplete or corrupt")):
        (tmp_path / "cut.eqx").write_bytes(whole[:cut])
        with pytest.raises(ValueError, match=message):
            sm.Amortizer.load(tmp_path / "cut.eqx", z.model)
    # the same through fit()
    via_fit = sm.fit(z.model.resize(64), test, method="amortized", amortizer=amort, seed=0, progress=False)
    np.testing.assert_array_equal(via_fit.draws()["source.flux"], post.draws()["source.flux"])


def test_grid_refuses_what_it_cannot_do():
    with pytest.raises(GridError, match="1 or 2 free parameters"):
        model = small_model()
        sm.fit(model, model.simulate({"source.x": 0.0, "source.y": 0.0, "source.log_flux": 4.0}),
               method="grid")
    z = sm.zoo.load("star_flux")
    data, _ = z.simulate(seed=0)
    far = z.model.with_priors({"source.flux": dist.Normal(1000.0, 1000.0)})  # data far outside the prior
    with pytest.raises(GridError, match="edge"):
        sm.fit(far, data, method="grid")
    shared = sm.ImagePlate(z.model.model.with_priors({"source.x": dist.Normal(0, 0.1)}),
                           ["source.flux"], 16)
    with pytest.raises(GridError, match="shared"):
        sm.fit(shared, data, method="grid")


def test_plate_data_errors_name_the_problem(lab):
    z, data, _ = lab
    with pytest.raises(sm.DataError, match=r"\(15, 15, 15\).*\(16, 15, 15\)"):
        sm.fit(z.model, data[:15], method="grid")
    bad = data.copy()
    bad[3, 2, 2] = -4.0
    bad[7, 0, 0] = 1.5
    with pytest.raises(sm.DataError, match="negative") as err:
        sm.fit(z.model, bad, method="grid")
    assert "integer" in str(err.value)
