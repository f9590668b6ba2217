"""The correlated-field sky: grid, normalisation, spectral slope, padding, gradients, NumPyro sites."""

import starmodels  # noqa: F401, I001  (first: configures JAX)

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

from starmodels.sky import (
    FieldGrid,
    FieldPriors,
    correlated_field,
    empirical_power_spectrum,
    lognormal,
    model_covariance,
    model_power_spectrum,
    sample_correlated_field,
)


def prior_draws(grid, priors, n, seed=0, name="sky"):
    """``n`` prior draws of the sample sites (prefix stripped), vmapped under one jit."""

    def one(key):
        tr = handlers.trace(handlers.seed(sample_correlated_field, key)).get_trace(
            grid, priors, name=name, record_amplitude=False)
        return {k.split(".", 1)[1]: v["value"] for k, v in tr.items() if v["type"] == "sample"}

    draws = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), n))
    draws["offset_mean"] = jnp.full(n, priors.offset_mean)
    return draws


def fields_of(draws, grid, padded=False):
    return jax.jit(jax.vmap(lambda p: correlated_field(p, grid, padded=padded)[0]))(draws)


def fixed_params(grid, key=0, asperity=True, **over):
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    params = {"fluctuations": 0.7, "loglogavgslope": -3.0, "flexibility": 1.5, "offset_mean": 2.0,
              "offset_std": 0.8, "xi": jax.random.normal(k1, grid.padded_shape)}
    if asperity:
        params["asperity"] = 0.5
    rows = 3 if asperity else 2
    params["spectrum_xi"] = jax.random.normal(k2, (rows, grid.n_bins - 1))
    params.update(over)
    return params


def test_grid_geometry_and_bins():
    g = FieldGrid((32, 30), pad=2.0, distance=0.5)
    assert g.padded_shape == (64, 60)
    assert FieldGrid((33, 33), pad=1.0).padded_shape == (34, 34)  # rounded up to even
    assert FieldGrid((30, 31), pad=1.1).padded_shape == (34, 36)  # ceil(33.0) = 33 -> 34; ceil(34.1) -> 36
    assert FieldGrid((32, 32), pad=1.0).padded_shape == (32, 32)
    # |k| in cycles per distance unit: the axis Nyquist frequency is 1 / (2 * distance)
    assert g.k_map[32, 0] == pytest.approx(1.0) and g.k_map[0, 30] == pytest.approx(1.0)
    assert g.k_map[0, 1] == pytest.approx(1 / (60 * 0.5))
    # every mode in exactly one bin, the zero mode alone in bin 0, bins in increasing |k|
    assert g.bin_count.sum() == g.size and g.bin_count[0] == 1
    assert np.argwhere(g.bin_index == 0).tolist() == [[0, 0]]
    assert np.all(np.diff(g.bin_k) > 0)
    np.testing.assert_allclose(g.bin_k[g.bin_index], g.k_map, rtol=1e-12)  # unique-|k| bins are exact
    assert np.bincount(g.bin_index.ravel()).tolist() == g.bin_count.tolist()
    lg = FieldGrid((32, 30), distance=0.5, log_bins=12)
    assert 2 <= lg.n_bins <= 12 and lg.bin_count.sum() == lg.size and np.all(np.diff(lg.bin_k) > 0)
    ratio = lg.k_map[lg.bin_index > 0] / lg.bin_k[lg.bin_index[lg.bin_index > 0]]
    width = (g.k_bins[-1] / g.k_bins[0]) ** (1 / 12)  # each mode lies within one log-bin width of its centre
    assert ratio.min() > 1 / width and ratio.max() < width
    with pytest.raises(ValueError):
        g.k_map[0, 0] = 1.0  # read-only


def test_lognormal_has_requested_mean_and_std():
    for mean, std in ((1.0, 0.5), (0.02, 0.1), (3.0, 0.01)):
        d = lognormal(mean, std)
        mu, sigma = float(d.base_dist.loc), float(d.base_dist.scale)  # moments in float64 (no cancellation)
        assert math.exp(mu + sigma**2 / 2) == pytest.approx(mean, rel=1e-6)
        assert math.sqrt(math.expm1(sigma**2)) * math.exp(mu + sigma**2 / 2) == pytest.approx(std, rel=1e-6)
    p = FieldPriors(fluctuations=(0.3, 0.1), loglogavgslope=(-2.5, 0.2))
    assert float(p.distribution("fluctuations").mean) == pytest.approx(0.3, rel=1e-5)
    slope = p.distribution("loglogavgslope")
    assert isinstance(slope, dist.Normal) and float(slope.loc) == -2.5 and float(slope.scale) == 0.2


@pytest.mark.parametrize("log_bins", [None, 16])
def test_normalisation_and_mean_slope_are_exact(log_bins):
    """sum of P over non-zero modes = fluctuations^2 = pixel variance; mean log-log slope = loglogavgslope."""
    g = FieldGrid((32, 32), log_bins=log_bins)
    for asperity in (True, False):
        p = fixed_params(g, asperity=asperity)  # a strong deviation from the power law
        k, power = model_power_spectrum(p, g)
        assert float(jnp.sum(power * g.bin_count[1:])) == pytest.approx(0.7**2, rel=1e-5)
        assert float(model_covariance(p, g)[0, 0]) == pytest.approx(0.7**2, rel=1e-5)
        logk, logp = np.log(k), np.log(np.asarray(power))
        assert (logp[-1] - logp[0]) / (logk[-1] - logk[0]) == pytest.approx(-3.0, abs=1e-4)
        # the deviation is really there (not a pure power law), so the check above is not trivial
        assert np.ptp(logp - (-3.0) * logk) > 0.5
        _, amplitude = correlated_field(p, g)
        np.testing.assert_allclose(amplitude**2, power, rtol=1e-5)
    # the unit of distance only relabels k: same latents give the same field
    g4 = FieldGrid((32, 32), distance=0.25, log_bins=log_bins)
    np.testing.assert_allclose(correlated_field(p, g4)[0], correlated_field(p, g)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g4.k_bins, 4 * g.k_bins)


def test_empirical_spectrum_normalisation():
    """Parseval: sum over bins of count * P_emp is the field's spatial variance on the padded grid."""
    g = FieldGrid((24, 20), pad=1.5, log_bins=10)
    x = jax.random.normal(jax.random.PRNGKey(3), (3, *g.padded_shape)) * 2.0 + 5.0
    k, power = empirical_power_spectrum(x, g)
    assert power.shape == (3, g.n_bins) and np.array_equal(k, g.k_bins)
    np.testing.assert_allclose(jnp.sum(power * g.bin_count[1:], axis=-1), x.var(axis=(-2, -1)), rtol=1e-4)
    # a single plane wave puts all its power in the bin of its |k|
    yy, xx = np.mgrid[: g.padded_shape[0], : g.padded_shape[1]]
    wave = np.cos(2 * np.pi * (3 * yy / g.padded_shape[0] + 2 * xx / g.padded_shape[1]))
    _, pw = empirical_power_spectrum(wave, g)
    assert int(np.argmax(pw)) + 1 == g.bin_index[3, 2]


@pytest.mark.parametrize("slope", [-2.0, -4.0])
def test_prior_draws_have_requested_slope(slope):
    """Average empirical spectrum of 400 prior draws: fitted log-log slope over a mid range of k.

    Per mode, E[|FFT|^2 / N^2] is exactly the model's P, so the fitted slope differs from the requested
    one only by (a) Monte-Carlo noise, about 0.005 for 400 draws (seen over several seeds), (b) the
    prior spread of the slope (std 0.02, which averages down), and (c) the tilt a small spectral
    deviation (flexibility 0.05) gives over the fitted range, about 0.001. A tolerance of 0.05 is
    ten times that, yet a wrong convention fails it (e.g. a spectrum per |k| rather than per mode
    would shift the slope by 1 in 2-D).
    The level is checked too: the mean ratio of empirical to model P is 1 within 0.004 here.
    """
    g = FieldGrid((32, 32))
    priors = FieldPriors(fluctuations=(1.0, 0.3), loglogavgslope=(slope, 0.02), flexibility=(0.05, 0.01))
    draws = prior_draws(g, priors, 400, seed=1)
    fields = fields_of(draws, g, padded=True)
    k, power = empirical_power_spectrum(fields, g)
    mean_power = np.asarray(power.mean(axis=0))
    mid = (k > 0.05) & (k < 0.35)
    fitted = np.polyfit(np.log(k[mid]), np.log(mean_power[mid]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.05)
    # and the level: the empirical spectrum estimates the model's P (same normalisation), bin by bin
    model = jax.vmap(lambda p: model_power_spectrum(p, g)[1])(draws)
    ratio = mean_power[mid] / np.asarray(model.mean(axis=0))[mid]
    assert np.mean(ratio) == pytest.approx(1.0, abs=0.03)


def test_pixel_std_matches_fluctuations():
    """Prior draws (random hyperparameters): pixel values minus the offset, in units of each draw's
    fluctuations, have unit variance; with the offset the variance is fluctuations^2 + offset_std^2."""
    g = FieldGrid((32, 32))
    priors = FieldPriors(offset_mean=3.0)  # defaults: slope -4 (large-scale dominated), flexibility on
    draws = prior_draws(g, priors, 600, seed=2)
    fields = fields_of(draws, g)
    offset = draws["offset_mean"] + draws["offset_std"] * draws["xi"][:, 0, 0]
    z2 = ((fields - offset[:, None, None]) / draws["fluctuations"][:, None, None]) ** 2
    per_draw = np.asarray(z2.mean(axis=(1, 2)))  # pixels within a draw are correlated: use draws as units
    se = float(per_draw.std()) / math.sqrt(len(per_draw))
    assert se < 0.05  # the test can resolve a 20% error in the std
    assert per_draw.mean() == pytest.approx(1.0, abs=4 * se)
    total = (fields - 3.0) ** 2 / (draws["fluctuations"] ** 2 + draws["offset_std"] ** 2)[:, None, None]
    per_draw = np.asarray(total.mean(axis=(1, 2)))
    assert per_draw.mean() == pytest.approx(1.0, abs=4 * float(per_draw.std()) / math.sqrt(len(per_draw)))


def _edge_correlations(pad, n=400):
    g = FieldGrid((32, 32), pad=pad)
    key = jax.random.PRNGKey(4)
    params = {"fluctuations": 1.0, "loglogavgslope": -1.5, "offset_std": 1.0,
              "xi": jax.random.normal(key, (n, *g.padded_shape)).at[:, 0, 0].set(0.0)}  # offset excluded
    s = jax.vmap(lambda xi: correlated_field({**params, "xi": xi}, g)[0])(params["xi"])
    far = np.asarray((s[:, :, 0] * s[:, :, -1]).mean(axis=1))  # left edge x right edge, per draw
    near = np.asarray((s[:, :, 0] * s[:, :, 1]).mean(axis=1))  # adjacent columns
    cov = model_covariance(params, g)
    return g, far, near, cov


def test_padding_prevents_wrap_round():
    """Slope -1.5: adjacent pixels correlate at ~0.5 but the correlation length is a few pixels.
    pad=2: the left and right edges of a 32-px region are uncorrelated; pad=1: they are torus neighbours."""
    _, far, near, cov = _edge_correlations(2.0)
    se = float(max(far.std(), near.std())) / math.sqrt(len(far))
    assert near.mean() > 0.3 and abs(far.mean()) < 0.1
    assert far.mean() == pytest.approx(float(cov[0, 31]), abs=4 * se)  # draws agree with the spectrum
    assert near.mean() == pytest.approx(float(cov[0, 1]), abs=4 * se)
    g1, far1, near1, cov1 = _edge_correlations(1.0)
    assert g1.padded_shape == (32, 32)
    diff = far1 - near1
    assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff)) + 1e-6
    assert far1.mean() > 0.3
    assert float(cov1[0, 31]) == pytest.approx(float(cov1[0, 1]), rel=1e-5)


def test_gradients_are_finite_everywhere():
    g = FieldGrid((24, 24))
    params = fixed_params(g)
    data = jnp.exp(correlated_field(fixed_params(g, key=9), g)[0])

    def loss(p):
        log_sky, amplitude = correlated_field(p, g)
        return jnp.sum((jnp.exp(log_sky) - data) ** 2) + jnp.sum(jnp.log(amplitude))

    grads = jax.jit(jax.grad(loss))(params)
    assert set(grads) == set(params)
    for name, value in grads.items():
        assert np.all(np.isfinite(value)), name
    # the zero mode and its amplitude get a gradient (finite, non-zero)
    assert float(grads["xi"][0, 0]) != 0.0 and float(grads["offset_std"]) != 0.0
    for name in ("fluctuations", "loglogavgslope", "flexibility", "asperity", "offset_mean"):
        assert float(grads[name]) != 0.0, name
    # without the deviation, and with the grid as a static jit argument
    plain = {k: v for k, v in params.items() if k not in ("flexibility", "asperity", "spectrum_xi")}
    jitted = jax.jit(correlated_field, static_argnums=1)
    np.testing.assert_allclose(jitted(plain, g)[0], correlated_field(plain, g)[0], rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda p: jnp.sum(jitted(p, g)[0] ** 2))(plain)
    assert all(np.all(np.isfinite(v)) for v in grads.values())


@pytest.mark.parametrize("priors",
                         [FieldPriors(), FieldPriors(asperity=(0.2, 0.1)), FieldPriors(flexibility=None)],
                         ids=["default", "asperity", "power-law"])
def test_numpyro_sites_and_log_density(priors):
    g = FieldGrid((32, 32))
    tr = handlers.trace(handlers.seed(sample_correlated_field, 0)).get_trace(g, priors, name="gal")
    samples = [k for k, v in tr.items() if v["type"] == "sample"]
    assert samples == list(priors.site_names("gal"))
    assert "gal.fluctuations" in samples and "gal.loglogavgslope" in samples and "gal.offset_std" in samples
    assert ("gal.asperity" in samples) == (priors.asperity is not None)
    assert tr["gal.xi"]["value"].shape == g.padded_shape
    if priors.flexibility is None:
        assert "gal.spectrum_xi" not in tr
    else:
        assert tr["gal.spectrum_xi"]["value"].shape == (priors.spectrum_rows(), g.n_bins - 1)
    # the only deterministic site is the (small) amplitude spectrum
    assert [k for k, v in tr.items() if v["type"] == "deterministic"] == ["gal.amplitude"]
    assert tr["gal.amplitude"]["value"].shape == (g.n_bins,)
    # the returned log-sky is correlated_field of the sampled values
    values = {k.split(".", 1)[1]: v["value"] for k, v in tr.items() if v["type"] == "sample"}
    expected = correlated_field({**values, "offset_mean": priors.offset_mean}, g)[0]
    returned = handlers.seed(sample_correlated_field, 0)(g, priors, name="gal")
    assert returned.shape == (32, 32)
    np.testing.assert_allclose(returned, expected, rtol=1e-5, atol=1e-6)
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "sample"}
    def logp(p):
        return log_density(sample_correlated_field, (g, priors), {"name": "gal"}, p)[0]

    assert np.isfinite(float(jax.jit(logp)(params)))
    grad = jax.jit(jax.grad(logp))(params)
    assert all(np.all(np.isfinite(v)) for v in grad.values())
    # recording is switched off on request, and by default for many bins
    seeded = handlers.seed(sample_correlated_field, 0)
    tr = handlers.trace(seeded).get_trace(g, priors, record_amplitude=False)
    assert not any(v["type"] == "deterministic" for v in tr.values())
    assert all(k.startswith("sky.") for k in tr)
    big = FieldGrid((48, 48))
    assert big.n_bins > 512

    def deterministic_sites(grid):  # evaluated abstractly (jax.eval_shape): nothing is compiled
        tr = handlers.trace(handlers.seed(sample_correlated_field, 0)).get_trace(grid, priors)
        return {k: v["value"] for k, v in tr.items() if v["type"] == "deterministic"}

    assert list(jax.eval_shape(lambda: deterministic_sites(g))) == ["sky.amplitude"]
    assert jax.eval_shape(lambda: deterministic_sites(big)) == {}


def _g():
    return FieldGrid((16, 16))


@pytest.mark.parametrize(("make", "match"), [
    (lambda: FieldGrid((1, 16)), "shape"),
    (lambda: FieldGrid((16,)), "shape"),
    (lambda: FieldGrid((16.0, 16)), "shape"),
    (lambda: FieldGrid((16, 16), pad=0.9), "pad"),
    (lambda: FieldGrid((16, 16), pad=float("nan")), "pad"),
    (lambda: FieldGrid((16, 16), distance=0.0), "distance"),
    (lambda: FieldGrid((16, 16), distance=-1.0), "distance"),
    (lambda: FieldGrid((16, 16), log_bins=1), "log_bins"),
    (lambda: FieldPriors(fluctuations=(1.0, -0.5)), "fluctuations: std"),
    (lambda: FieldPriors(fluctuations=(0.0, 0.5)), "fluctuations: mean"),
    (lambda: FieldPriors(loglogavgslope=(-4.0, 0.0)), "loglogavgslope: std"),
    (lambda: FieldPriors(offset_std=(1.0, float("inf"))), "offset_std"),
    (lambda: FieldPriors(flexibility=(1.0,)), "flexibility"),
    (lambda: FieldPriors(asperity=(-1.0, 0.1)), "asperity: mean"),
    (lambda: FieldPriors(flexibility=None, asperity=(1.0, 0.1)), "asperity needs flexibility"),
    (lambda: FieldPriors(offset_mean=float("nan")), "offset_mean"),
    (lambda: lognormal(1.0, 0.0), "std"),
    (lambda: correlated_field({**fixed_params(_g()), "xi": jnp.zeros((16, 16))}, _g()), "xi"),
    (lambda: correlated_field({**fixed_params(_g(), asperity=False), "asperity": 0.3}, _g()), "spectrum_xi"),
    (lambda: correlated_field({k: v for k, v in fixed_params(_g()).items() if k != "fluctuations"}, _g()),
     "fluctuations"),
    (lambda: model_power_spectrum({"fluctuations": 1.0, "loglogavgslope": -3.0, "flexibility": 1.0}, _g()),
     "spectrum_xi"),
    (lambda: empirical_power_spectrum(jnp.zeros((16, 16)), _g()), "padded grid"),
    (lambda: sample_correlated_field(_g(), name=""), "name"),
    (lambda: FieldPriors().distribution("offset_mean"), "offset_mean"),
])
def test_bad_settings_raise_value_error_naming_the_setting(make, match):
    with pytest.raises(ValueError, match=match):
        make()
