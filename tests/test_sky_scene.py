import starmodels  # noqa: F401, I001

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.wcs import WCS
from numpyro import handlers
from numpyro.infer.util import log_density

from starmodels.noise import ErrGaussian, VariableGaussian
from starmodels.sky.channel import ChannelData
from starmodels.sky.correlated_field import FieldGrid, FieldPriors, correlated_field, sample_correlated_field
from starmodels.sky.psf_images import gaussian_psf
from starmodels.sky.reproject import PixelMap
from starmodels.sky.scene import (
    ChannelModel,
    Scene,
    build_channels,
    fit_svi,
    model_arrays,
    reduced_chi2,
    scene_model,
)

CRVAL = (150.0, 2.0)
SHAPE = (24, 24)


def tan(shape, scale, crval=CRVAL):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    d = scale / 3600.0
    w.wcs.cd = [[-d, 0.0], [0.0, d]]
    return w


def make_scene(n_fields=1):
    return Scene(FieldGrid(SHAPE, pad=2.0, distance=0.1), tan(SHAPE, 0.1), n_fields=n_fields)


def make_channels(image_a, image_b, sigma=True, seed=0):
    rng = np.random.default_rng(seed)
    sa = 0.15 * (1 + 0.5 * rng.uniform(size=SHAPE))
    sb = 0.3 * (1 + 0.5 * rng.uniform(size=(12, 12)))
    return [ChannelData("a", image_a, tan(SHAPE, 0.1), sigma=sa if sigma else None,
                        psf=np.asarray(gaussian_psf(9, 1.3))),
            ChannelData("b", image_b, tan((12, 12), 0.2), sigma=sb if sigma else None,
                        psf=np.asarray(gaussian_psf(5, 0.8)))]


TRUTH = {"sky.fluctuations": 0.8, "sky.loglogavgslope": -4.0, "sky.flexibility": 0.5, "sky.offset_std": 1.0,
         "channel.a.background": 0.2, "channel.b.amplitude": 0.5, "channel.b.background": -0.1}


@pytest.fixture(scope="module")
def simulated():
    """Two channels drawn from the model itself (known sigma maps), 10 % of the pixels held out."""
    scene = make_scene()
    chans = build_channels(scene, make_channels(np.zeros(SHAPE), np.zeros((12, 12))))
    model = handlers.condition(handlers.seed(scene_model, jax.random.PRNGKey(0)), data=TRUTH)
    tr = handlers.trace(model).get_trace(scene, chans, model_arrays(chans), observe=False)
    images = [np.asarray(tr[f"channel.{c}.image"]["value"], float) for c in "ab"]
    out = handlers.substitute(handlers.seed(scene_model, 0), data={k: v["value"] for k, v in tr.items()
                                                                   if v["type"] == "sample"})
    true_sky = np.asarray(out(scene, chans, model_arrays(chans), observe=False)["a"]["sky"])
    fitted = build_channels(scene, make_channels(*images), holdout=0.1, seed=0)
    return scene, fitted, true_sky


def test_sites_two_fields_log_density_and_gradients():
    scene = make_scene(n_fields=2)
    rng = np.random.default_rng(1)
    chans = build_channels(scene, make_channels(rng.normal(1.0, 0.1, SHAPE), rng.normal(2.0, 0.1, (12, 12)),
                                                sigma=False))
    arrays = model_arrays(chans)
    tr = handlers.trace(handlers.seed(scene_model, 0)).get_trace(scene, chans, arrays)
    sample = {n for n, s in tr.items() if s["type"] == "sample"}
    hyper = ("fluctuations", "loglogavgslope", "flexibility", "offset_std", "xi", "spectrum_xi")
    field_sites = {f"sky.f{j}.{s}" for j in range(2) for s in hyper}
    channel_sites = {f"channel.{c}.{s}" for c in "ab" for s in ("mixing", "background", "noise.b", "noise.s",
                                                                "image")}
    assert sample == field_sites | channel_sites | {"channel.b.amplitude"}
    assert "channel.a.amplitude" not in tr
    assert [n for n, s in tr.items() if s["type"] == "sample" and s["is_observed"]] == [
        "channel.a.image", "channel.b.image"]
    deterministic = {n for n, s in tr.items() if s["type"] == "deterministic"}
    assert deterministic == {"sky.f0.amplitude", "sky.f1.amplitude"}
    assert tr["channel.a.mixing"]["value"].shape == (2,)
    assert isinstance(chans[0].noise, VariableGaussian) and chans[0].amplitude_prior is None
    values = {n: s["value"] for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}

    def logp(v):
        return log_density(scene_model, (scene, chans, arrays), {}, v)[0]

    lp, grad = jax.jit(jax.value_and_grad(logp))(values)
    assert np.isfinite(float(lp))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grad))


def test_one_field_sites_match_sample_correlated_field():
    scene = make_scene()
    chans = build_channels(scene, make_channels(np.ones(SHAPE), np.ones((12, 12))))
    tr = handlers.trace(handlers.seed(scene_model, 0)).get_trace(scene, chans, model_arrays(chans))
    assert isinstance(chans[1].noise, ErrGaussian)
    sky_sites = [n for n, s in tr.items() if n.startswith("sky.") and s["type"] == "sample"]
    assert sky_sites == list(FieldPriors().site_names("sky"))
    assert "channel.a.mixing" not in tr and "channel.b.amplitude" in tr
    # the reference channel's sky is exp(correlated_field) of the traced sky sites (amplitude fixed to 1)
    out = handlers.seed(scene_model, 0)(scene, chans, model_arrays(chans))    # the traced run's values
    params = {k.split(".", 1)[1]: tr[k]["value"] for k in sky_sites}
    params["offset_mean"] = scene.priors.offset_mean
    log_field, _ = correlated_field(params, scene.grid)
    np.testing.assert_allclose(np.log(np.asarray(out["a"]["sky"])), np.asarray(log_field), atol=1e-4)
    a = handlers.seed(sample_correlated_field, 3)(scene.grid, scene.priors, "sky")
    assert np.asarray(a).shape == scene.shape


def test_simulate_and_fit_recovers_sky(simulated):
    scene, chans, true_sky = simulated
    fit = fit_svi(scene, chans, steps=1500, seed=1, learning_rate=0.02)
    held = reduced_chi2(scene, chans, fit.params, "held")
    fitted = reduced_chi2(scene, chans, fit.params, "fit")
    print("held chi2", held, "fit chi2", fitted)
    for c in "ab":
        assert 0.7 <= held[c] <= 1.4
        assert 0.7 <= fitted[c] <= 1.4
    corr = np.corrcoef(true_sky.ravel(), fit.sky["a"].ravel())[0, 1]
    print("corr", corr)
    assert corr > 0.9
    assert fit.params["channel.b.amplitude"] == pytest.approx(0.5, rel=0.2)
    assert fit.losses.shape == (1500,) and fit.losses[-1] < fit.losses[0]


def test_fit_is_reproducible_and_chi2(simulated):
    scene, chans, true_sky = simulated
    f1 = fit_svi(scene, chans, steps=60, seed=5, learning_rate=0.02, chunk=30)
    f2 = fit_svi(scene, chans, steps=60, seed=5, learning_rate=0.02, chunk=30)
    np.testing.assert_array_equal(f1.losses, f2.losses)
    for k in f1.params:
        np.testing.assert_array_equal(f1.params[k], f2.params[k])
    np.testing.assert_array_equal(f1.sky["a"], f2.sky["a"])
    assert f1.losses.shape == (60,) and np.all(np.isfinite(f1.losses)) and f1.losses[-1] < f1.losses[0]
    assert f1.sky["a"].shape == SHAPE and np.all(f1.sky["a"] > 0)
    chi = reduced_chi2(scene, chans, f1.params, "held")
    assert set(chi) == {"a", "b"} and all(np.isfinite(v) and v > 0 for v in chi.values())
    # chi^2 by hand for channel a at the same parameters
    model = handlers.substitute(handlers.seed(scene_model, 0), data=f1.params)
    out = model(scene, chans, model_arrays(chans))
    z = (chans[0].data.image - np.asarray(out["a"]["mu"])) / chans[0].data.sigma
    assert chi["a"] == pytest.approx(float(np.mean(z[chans[0].held] ** 2)), rel=1e-4)
    with pytest.raises(ValueError, match="missing the latent site"):
        reduced_chi2(scene, chans, {k: v for k, v in f1.params.items() if k != "sky.xi"})
    with pytest.raises(ValueError, match="which must be"):
        reduced_chi2(scene, chans, f1.params, "all")


def test_channel_masks_and_holdout():
    scene = make_scene()
    chans = build_channels(scene, make_channels(np.ones(SHAPE), np.ones((12, 12))), holdout=0.1, seed=2)
    for c in chans:
        assert not (c.fit & c.held).any() and (c.fit | c.held).all()
        assert c.held.sum() == round(0.1 * c.data.image.size)
    again = build_channels(scene, make_channels(np.ones(SHAPE), np.ones((12, 12))), holdout=0.1, seed=2)
    np.testing.assert_array_equal(chans[0].held, again[0].held)
    none = build_channels(scene, make_channels(np.ones(SHAPE), np.ones((12, 12))))
    assert not none[0].held.any() and none[0].fit.all()
    assert chans[0].reference and not chans[1].reference
    assert chans[1].amplitude_prior[1] == pytest.approx(1.5)


def test_covering_scene_contains_channels():
    chans = [ChannelData("a", np.ones((20, 30)), tan((20, 30), 0.1), psf=np.asarray(gaussian_psf(5, 1.0))),
             ChannelData("b", np.ones((10, 10)), tan((10, 10), 0.25, crval=(150.0005, 2.0003)))]
    scene = Scene.covering(chans, n_fields=2)
    assert scene.n_fields == 2 and scene.grid.distance == pytest.approx(0.1)
    assert scene.field_names == ("sky.f0", "sky.f1")
    assert math.isclose(scene.priors.offset_mean, math.log(1.0))  # flat images: falls back to 1
    for c in chans:
        pm = PixelMap.build(scene.wcs, scene.shape, c.wcs, c.shape)
        assert pm.coverage.min() == pytest.approx(1.0)
    coarse = Scene.covering(chans, pixel_scale=0.5)
    assert coarse.grid.distance == 0.5 and coarse.shape[0] < scene.shape[0]


def test_bad_inputs_raise_before_compiling():
    scene = make_scene()
    good = make_channels(np.ones(SHAPE), np.ones((12, 12)))
    far = ChannelData("far", np.ones((10, 10)), tan((10, 10), 0.1, crval=(151.0, 2.0)))
    with pytest.raises(ValueError, match="'far' does not overlap the scene"):
        build_channels(scene, [good[0], far])
    with pytest.raises(ValueError, match="at least 1 channel"):
        build_channels(scene, [])
    with pytest.raises(ValueError, match="at least 1 channel"):
        Scene.covering([])
    with pytest.raises(ValueError, match="at least 1 channel"):
        fit_svi(scene, [], steps=10, seed=0)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="n_fields"):
            Scene(scene.grid, scene.wcs, n_fields=k)
        with pytest.raises(ValueError, match="n_fields"):
            Scene.covering(good, n_fields=k)
    # ChannelData refuses an all-False mask; a mask hiding every pixel inside the scene is refused here
    with pytest.raises(ValueError, match="the mask hides every pixel"):
        ChannelData("a", np.ones(SHAPE), tan(SHAPE, 0.1), mask=np.zeros(SHAPE, bool))
    big = (40, 40)
    mask = np.zeros(big, bool)
    mask[:3, :3] = True  # only a corner outside the 24x24 scene
    outside = ChannelData("c", np.ones(big), tan(big, 0.1), mask=mask)
    with pytest.raises(ValueError, match="'c': the mask hides every pixel inside the scene"):
        build_channels(scene, [outside])
    bad_sigma = ChannelData("d", np.ones(SHAPE), tan(SHAPE, 0.1), sigma=np.zeros(SHAPE))
    with pytest.raises(ValueError, match="'d': sigma has 576 zero"):
        build_channels(scene, [bad_sigma])
    chans = build_channels(scene, good)
    with pytest.raises(ValueError, match="steps"):
        fit_svi(scene, chans, steps=0, seed=0)
    with pytest.raises(ValueError, match="reference"):
        fit_svi(scene, chans[::-1], steps=1, seed=0)
    with pytest.raises(ValueError, match="holdout"):
        ChannelModel.build(good[0], scene, holdout=1.0)
