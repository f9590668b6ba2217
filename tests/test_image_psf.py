"""ImagePSF: normalisation, flux-conserving sub-pixel shifts, agreement with dLux's conventions."""

import dLux.utils as dlu
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from starmodels.image_psf import ImagePSF, triangle_psf
from starmodels.noise import PoissonCounts
from starmodels.optics import TelescopeOptics


def _centroid(img):
    yy, xx = np.indices(img.shape)
    return (img * yy).sum() / img.sum(), (img * xx).sum() / img.sum()


def _gaussian(n=21, sd=1.6):
    yy, xx = np.indices((n, n)) - (n - 1) / 2
    return np.exp(-(xx**2 + yy**2) / (2 * sd**2))


def test_triangle_psf_is_the_lab_psf():
    psf = triangle_psf(8)
    assert psf.shape == (15, 15)
    assert psf.sum() == pytest.approx(1.0)
    assert psf.max() == pytest.approx(1 / 64)  # m = 1000 / max(psf) = 64000
    assert np.allclose(psf[7], psf[:, 7]) and np.argmax(psf) == 7 * 15 + 7


@pytest.mark.parametrize("shift", ["fourier", "linear"])
def test_subpixel_shift_conserves_flux_and_moves_the_centroid(shift):
    optics = ImagePSF(3.7 * _gaussian(), pixel_scale=0.1, shift=shift)  # unnormalised input
    offsets = np.array([[0.0, 0.0], [0.023, -0.041], [0.15, 0.075]])  # arcsec (x, y)
    psfs = np.asarray(optics.psfs({}, dlu.arcsec2rad(jnp.asarray(offsets))))
    c = (21 - 1) / 2
    for img, (x, y) in zip(psfs, offsets, strict=True):
        assert img.sum() == pytest.approx(1.0, abs=2e-5)
        cy, cx = _centroid(img)
        assert cx - c == pytest.approx(x / 0.1, abs=0.02)  # x moves along columns
        assert cy - c == pytest.approx(y / 0.1, abs=0.02)  # y along rows


def test_direction_matches_dlux_optics():
    tele = TelescopeOptics(jnp.zeros(0), noll=(), wf_npixels=64, psf_npixels=15, pixel_scale=0.06,
                           oversample=1)
    pos = dlu.arcsec2rad(jnp.array([[0.09, -0.05]]))
    centred = np.asarray(tele.psfs({"zernike": jnp.zeros(0)}, jnp.zeros((1, 2))))[0]
    moved_dlux = np.asarray(tele.psfs({"zernike": jnp.zeros(0)}, pos))[0]
    moved_img = np.asarray(ImagePSF(centred, pixel_scale=0.06).psfs({}, pos))[0]
    d_dlux = np.subtract(_centroid(moved_dlux), _centroid(centred))
    d_img = np.subtract(_centroid(moved_img), _centroid(centred))
    assert np.allclose(d_img, d_dlux, atol=0.1), (d_img, d_dlux)


def test_bad_psf_images_are_rejected_with_every_problem():
    bad = np.ones((4, 5))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="square") as err:
        ImagePSF(bad, pixel_scale=0.1, shift="cubic")
    assert "non-finite" in str(err.value) and "shift" in str(err.value)
    with pytest.raises(ValueError, match="positive total"):
        ImagePSF(-np.ones((5, 5)), pixel_scale=0.1)
    with pytest.raises(ValueError, match="multiple of oversample"):
        ImagePSF(np.ones((5, 5)), pixel_scale=0.1, oversample=2)


def test_poisson_counts_log_prob_is_exact_and_stable():
    k = np.array([0.0, 1.0, 4.0, 77.0, 19200.0, 19213.0])
    mu = np.array([0.3, 2.5, 4.0, 70.0, 19180.5, 19180.5])
    with jax.enable_x64(True):
        ours = np.asarray(PoissonCounts(jnp.asarray(mu)).log_prob(jnp.asarray(k)))
    assert np.allclose(ours, stats.poisson.logpmf(k, mu), rtol=0, atol=1e-9)
    # float32: the mu-dependent part must move smoothly with mu at 2e4 counts (textbook form: ~0.01 noise)
    mus = 19200.0 + jnp.linspace(-1.0, 1.0, 201, dtype=jnp.float32)
    lp = np.asarray(jax.vmap(lambda m: PoissonCounts(m).log_prob(jnp.float32(19200.0)))(mus), float)
    exact = stats.poisson.logpmf(19200, np.asarray(mus, float))
    assert np.max(np.abs(np.diff(lp) - np.diff(exact))) < 1e-4


@pytest.mark.parametrize("stamp,npix", [(21, 40), (21, 41), (20, 33)])
def test_small_stamp_on_a_large_image_is_centred_and_never_wraps(stamp, npix):
    optics = ImagePSF(_gaussian(stamp, 1.5), pixel_scale=0.1, npixels=npix)
    where = dlu.arcsec2rad(jnp.array([[0.0, 0.0], [-0.1 * (npix / 2), 0.0]]))
    centred, edge = np.asarray(optics.psfs({}, where))
    c = (npix - 1) / 2
    assert centred.shape == (npix, npix) and np.allclose(_centroid(centred), (c, c), atol=0.02)
    assert centred.sum() == pytest.approx(1.0, abs=1e-4)
    # a star on the left edge: about half its light falls off the image, none reappears on the right
    assert 0.4 < edge.sum() < 0.6
    assert np.abs(edge[:, -stamp // 2:]).max() < 1e-5
