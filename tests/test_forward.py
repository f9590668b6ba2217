"""The forward model: agreement with dLux itself, physics of the aberrations, jittability."""

import dLux as dl
import dLux.utils as dlu
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from starmodels.detectors import PixelDetector
from starmodels.forward import ForwardModel
from starmodels.noise import Poisson
from starmodels.optics import TelescopeOptics
from starmodels.sources import PointSource


def _truth(binary):
    return {k: jnp.asarray(v) for k, v in binary.truth.items()}


def test_render_matches_dlux_binary_source(binary):
    """Our parameterisation reproduces dLux's own BinarySource through the same optics."""
    t, model = _truth(binary), binary.model
    optics = model.optics
    system = optics.system.set("aperture.coefficients", t["optics.zernike"] * 1e-9)
    source = dl.BinarySource(
        wavelengths=optics.wavelengths, weights=jnp.tile(optics.weights, (2, 1)),
        position=dlu.arcsec2rad(jnp.stack([t["source.x"], t["source.y"]])),
        mean_flux=0.5 * 10 ** t["source.log_flux"], separation=dlu.arcsec2rad(t["source.separation"]),
        position_angle=dlu.deg2rad(t["source.position_angle"]), contrast=t["source.contrast"])
    expected = dlu.downsample(system.model(source), model.detector.oversample, mean=False)
    got = model.render(t)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))


def test_flux_is_conserved_up_to_the_field_of_view(binary):
    t = _truth(binary)
    total = float(binary.model.render(t).sum())
    assert 0.8 * 10 ** 5.0 < total <= 10 ** 5.0  # light outside 16x16 px is lost, none is created


def test_contrast_splits_flux_between_the_stars(binary):
    t = _truth(binary)
    pos, flux = binary.model.source.positions_fluxes({k.split(".")[1]: v for k, v in t.items()
                                                      if k.startswith("source.")})
    np.testing.assert_allclose(flux.sum(), 10 ** 5.0, rtol=1e-5)
    np.testing.assert_allclose(flux[0] / flux[1], 3.0, rtol=1e-5)
    sep = dlu.rad2arcsec(jnp.linalg.norm(pos[0] - pos[1]))
    np.testing.assert_allclose(sep, 0.1, rtol=1e-4)


def _centred_star(spider: bool, noll):
    optics = TelescopeOptics(jnp.zeros(len(noll)), wf_npixels=64, psf_npixels=16, pixel_scale=0.03,
                             noll=noll, wavelengths_nm=(600.0,),
                             spider_width=0.05 if spider else 0.0, spider_angles=(0.0,) if spider else ())
    src = PointSource({"x": 0.0, "y": 0.0, "log_flux": 5.0})
    return ForwardModel(src, optics, PixelDetector(16, 0.03, 1), Poisson())


@pytest.mark.parametrize("noll", [(4,), (5,), (6,)])
def test_single_spider_breaks_the_even_zernike_sign_degeneracy(noll):
    """Defocus and astigmatism of either sign give the same image through a symmetric pupil;
    one spider arm makes them differ, which is what lets the data fix their sign."""
    for spider, differs in ((False, False), (True, True)):
        model = _centred_star(spider, noll)
        plus = model.render({"optics.zernike": jnp.array([40.0])})
        minus = model.render({"optics.zernike": jnp.array([-40.0])})
        rel = float(jnp.abs(plus - minus).max() / plus.max())
        assert (rel > 1e-3) == differs, (spider, rel)


def test_render_is_jittable_and_differentiable(binary):
    t = _truth(binary)
    f = jax.jit(lambda p: binary.model.render(p))
    np.testing.assert_allclose(f(t), binary.model.render(t), rtol=1e-5, atol=1e-3)
    g = jax.grad(lambda p: f(p).sum())(t)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in g.values())
    assert abs(float(g["source.log_flux"])) > 0


def test_detector_background_and_jitter():
    model = _centred_star(False, (4,))
    base = model.render({"optics.zernike": jnp.zeros(1)})
    bg = model.with_fixed({"detector.background": 7.0}).render({"optics.zernike": jnp.zeros(1)})
    np.testing.assert_allclose(bg - base, 7.0, rtol=1e-4)
    jit = model.with_priors({"detector.jitter": dist.LogNormal(0.0, 0.1)})
    blurred = jit.render({"optics.zernike": jnp.zeros(1), "detector.jitter": 1.0})
    sharp = jit.render({"optics.zernike": jnp.zeros(1), "detector.jitter": 1e-3})
    np.testing.assert_allclose(sharp, base, rtol=1e-3, atol=1e-3 * float(base.max()))
    # a 1-pixel Gaussian blur of a ~1.7-pixel-sd core lowers the peak by roughly a quarter
    assert 0.6 < float(blurred.max()) / float(base.max()) < 0.85
    np.testing.assert_allclose(float(blurred.sum()), float(base.sum()), rtol=0.02)


def test_render_names_missing_parameters(binary):
    t = _truth(binary)
    del t["source.contrast"]
    with pytest.raises(KeyError, match="source.contrast"):
        binary.model.render(t)


def test_mismatched_optics_and_detector_grids_are_rejected():
    optics = TelescopeOptics(jnp.zeros(1), wf_npixels=32, psf_npixels=16, pixel_scale=0.03, noll=(4,))
    with pytest.raises(ValueError, match="grids differ"):
        ForwardModel(PointSource({"x": 0.0, "y": 0.0, "log_flux": 3.0}), optics,
                     PixelDetector(12, 0.03, 1), Poisson())
