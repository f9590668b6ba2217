"""Per-channel response: reprojection (flux, reproject, shifts, jit arguments), FFT convolution, PSFs."""

import starmodels  # noqa: F401, I001  (first: configures JAX)

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from astropy.wcs import WCS

from starmodels.sky.convolve import FFTConvolver, fft_convolve
from starmodels.sky.psf_images import gaussian_psf, moffat_psf, normalized_psf, recenter_psf, resample_psf
from starmodels.sky.reproject import PixelMap, apply, default_oversample

CRVAL = (150.1, 2.2)


def tan_wcs(scale, shape, rot=0.0, offset=(0.0, 0.0), crval=CRVAL):
    """A TAN WCS of ``scale`` arcsec/px whose reference point is the grid centre + ``offset`` (x, y) px.

    ``rot`` (radians) rotates the pixel axes on the sky; RA increases to the left as usual.
    """
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    # FITS CRPIX is 1-based: the centre of a grid of W pixels is at (W + 1) / 2
    w.wcs.crpix = [(shape[1] + 1) / 2 + offset[0], (shape[0] + 1) / 2 + offset[1]]
    d, c, s = scale / 3600.0, math.cos(rot), math.sin(rot)
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def gaussians(shape, blobs):
    """Sum of round Gaussians ``(flux, x, y, sigma)`` integrated to flux ``flux`` (pixels, flux per pixel)."""
    y, x = np.indices(shape, dtype=float)
    img = np.zeros(shape)
    for flux, x0, y0, s in blobs:
        img += flux * np.exp(-0.5 * ((x - x0) ** 2 + (y - y0) ** 2) / s**2) / (2 * np.pi * s**2)
    return img


def moments(img):
    """Centroid (row, col) and second central moments (Iyy, Ixx, Ixy) of an image, pixels."""
    img = np.asarray(img, dtype=float)
    y, x = np.indices(img.shape)
    t = img.sum()
    cy, cx = (img * y).sum() / t, (img * x).sum() / t
    iyy = (img * (y - cy) ** 2).sum() / t
    ixx = (img * (x - cx) ** 2).sum() / t
    ixy = (img * (x - cx) * (y - cy)).sum() / t
    return np.array([cy, cx]), np.array([iyy, ixx, ixy])


# ---------------------------------------------------------------------------------------------- reprojection

def test_default_oversample_rule():
    assert default_oversample(0.168 / 0.03) == 17  # ceil(3 * 5.6)
    assert default_oversample(1.0) == 3
    assert default_oversample(0.2) == 2  # at least 2 per side
    assert default_oversample(50.0) == 32  # capped
    with pytest.raises(ValueError, match="scale_ratio"):
        default_oversample(0.0)


def test_flux_conserved_coarser_channel():
    """Scene 0.03"/px, 3" wide, inside a rotated, offset 0.168"/px channel: all of each pixel's flux lands."""
    scene_shape, channel_shape = (100, 100), (30, 30)
    sw = tan_wcs(0.03, scene_shape)
    cw = tan_wcs(0.168, channel_shape, rot=0.4, offset=(0.37, -0.21))
    pm = PixelMap.build(sw, scene_shape, cw, channel_shape)
    assert pm.oversample == 17 and pm.index.dtype == np.int32 and pm.weight.dtype == np.float32
    assert pm.index.shape == (900, pm.n_terms) and pm.n_terms < 4 * 17**2  # duplicates merged
    assert pm.coverage.max() == 1.0 and pm.coverage.min() == 0.0  # channel corners lie off the scene
    rng = np.random.default_rng(1)
    smooth = gaussians(scene_shape, [(50.0, 40.3, 55.1, 6.0), (20.0, 70.0, 30.0, 3.0)])
    noise = rng.uniform(0.0, 1.0, scene_shape)  # rough, pixel-to-pixel: the hardest case
    for scene in (smooth, noise):
        assert float(pm(jnp.asarray(scene, jnp.float32)).sum()) == pytest.approx(scene.sum(), rel=2e-4)
    # per scene pixel: the transpose of the map applied to ones = how much of each pixel's flux is seen
    _, vjp = jax.vjp(pm, jnp.zeros(scene_shape, jnp.float32))
    seen = np.asarray(vjp(jnp.ones(channel_shape, jnp.float32))[0])
    # sub-points 1/3 scene px apart on a rotated lattice: the bilinear kernel's integral to ~0.5 %; the
    # scene's hard edge cuts the outer pixels, which are sampled to ~1/3 of a half pixel
    np.testing.assert_allclose(seen[1:-1, 1:-1], 1.0, atol=1e-2)
    np.testing.assert_allclose(seen, 1.0, atol=0.12)
    assert seen.sum() == pytest.approx(seen.size, rel=1e-5)


def test_flux_conserved_finer_channel():
    """Scene 0.1"/px, 4" wide, inside a rotated 0.03"/px channel (channel pixels smaller than the scene's)."""
    scene_shape, channel_shape = (40, 40), (200, 200)
    sw = tan_wcs(0.1, scene_shape, offset=(0.2, 0.4))
    cw = tan_wcs(0.03, channel_shape, rot=-0.3)
    pm = PixelMap.build(sw, scene_shape, cw, channel_shape)
    assert pm.oversample == 2
    scene = np.random.default_rng(2).uniform(0.0, 1.0, scene_shape)
    out = np.asarray(pm(jnp.asarray(scene, jnp.float32)))
    assert out.sum() == pytest.approx(scene.sum(), rel=2e-4)
    # flux per channel pixel ~ flux per scene pixel times the area ratio (0.03 / 0.1)^2
    inner = pm.coverage == 1.0
    assert out[inner].mean() == pytest.approx(scene.mean() * 0.09, rel=0.02)
    _, vjp = jax.vjp(pm, jnp.zeros(scene_shape, jnp.float32))
    seen = np.asarray(vjp(jnp.ones(channel_shape, jnp.float32))[0])
    np.testing.assert_allclose(seen[1:-1, 1:-1], 1.0, atol=1e-2)
    np.testing.assert_allclose(seen, 1.0, atol=0.12)


def test_agrees_with_reproject_exact():
    """Smooth scene, rotated channel with a sub-pixel offset, all channel pixels fully covered.

    reproject_exact conserves surface brightness, so the scene goes in as flux / scene pixel area and
    the result comes back times the channel pixel area. The two differ in how they reconstruct the
    scene between pixel centres: reproject as piecewise constant (box, variance 1/12 scene px^2 per
    axis), PixelMap bilinearly (tent, 1/6 px^2). For the sigma = 3 px blob that extra 1/12 px^2 lowers
    its peak by ~0.9 % (measured 0.74 % of the image peak), so the raw comparison allows 1 % of the
    peak. Giving reproject the scene with the extra 1/12 px^2 added to every blob removes that
    difference: they then agree to 0.2 % of the peak (measured 0.11 %), and in total flux to 1e-4.
    """
    import reproject  # the dev extra installs it: a missing package is a failure, not a skip
    scene_shape, channel_shape = (120, 120), (30, 30)
    sw = tan_wcs(0.05, scene_shape)
    cw = tan_wcs(0.13, channel_shape, rot=0.5, offset=(0.31, -0.44))
    blobs = [(100.0, 55.2, 62.7, 5.0), (40.0, 40.0, 75.0, 3.0), (60.0, 75.0, 45.0, 8.0)]
    scene = gaussians(scene_shape, blobs) + 0.01
    pm = PixelMap.build(sw, scene_shape, cw, channel_shape)
    assert np.all(pm.coverage == 1.0)
    ours = np.asarray(pm(jnp.asarray(scene, jnp.float32)), dtype=float)

    def exact(img):
        sb, footprint = reproject.reproject_exact((img / pm.scene_pixel_area, sw), cw,
                                                  shape_out=channel_shape)
        np.testing.assert_allclose(footprint, 1.0, atol=1e-6)
        return sb * pm.channel_pixel_area

    ref = exact(scene)
    assert np.abs(ours - ref).max() < 1e-2 * ref.max()
    assert ours.sum() == pytest.approx(ref.sum(), rel=1e-4)
    tent_blobs = [(f, x, y, math.sqrt(s**2 + 1 / 12)) for f, x, y, s in blobs]
    ref_tent = exact(gaussians(scene_shape, tent_blobs) + 0.01)
    assert np.abs(ours - ref_tent).max() < 2e-3 * ref.max()
    assert ours.sum() == pytest.approx(ref_tent.sum(), rel=1e-4)


def test_pure_shift_moves_blob():
    """Same scale, channel reference pixel shifted by (3.25, -2.5) px: a blob moves by exactly that."""
    shape = (40, 40)
    sw = tan_wcs(0.05, shape)
    cw = tan_wcs(0.05, shape, offset=(3.25, -2.5))
    pm = PixelMap.build(sw, shape, cw, shape)
    scene = gaussians(shape, [(10.0, 17.4, 21.7, 0.8)])
    out = np.asarray(pm(jnp.asarray(scene, jnp.float32)))
    (cy0, cx0), _ = moments(scene)
    (cy1, cx1), _ = moments(out)
    assert cx1 - cx0 == pytest.approx(3.25, abs=0.01)
    assert cy1 - cy0 == pytest.approx(-2.5, abs=0.01)
    assert out.sum() == pytest.approx(scene.sum(), rel=1e-4)
    # a channel twice as coarse sharing the reference point: positions scale by 1/2 about it
    cw2 = tan_wcs(0.1, (20, 20))
    out2 = np.asarray(PixelMap.build(sw, shape, cw2, (20, 20))(jnp.asarray(scene, jnp.float32)))
    (cy2, cx2), _ = moments(out2)
    assert cx2 == pytest.approx(9.5 + (cx0 - 19.5) / 2, abs=0.01)
    assert cy2 == pytest.approx(9.5 + (cy0 - 19.5) / 2, abs=0.01)


def test_pixel_map_errors_and_extra_axes():
    shape = (20, 20)
    sw = tan_wcs(0.05, shape)
    far = tan_wcs(0.05, shape, crval=(151.0, 2.2))  # 1 degree away
    with pytest.raises(ValueError, match="do not overlap"):
        PixelMap.build(sw, shape, far, shape)
    linear = WCS(naxis=2)
    linear.wcs.ctype = ["LINEAR", "LINEAR"]
    with pytest.raises(ValueError, match="channel_wcs is not celestial"):
        PixelMap.build(sw, shape, linear, shape)
    with pytest.raises(ValueError, match="scene_wcs must be an astropy.wcs.WCS"):
        PixelMap.build("sky", shape, sw, shape)
    for bad in [(0, 5), (5,), (3, 3, 3), (4.0, 4)]:
        with pytest.raises(ValueError, match="scene_shape"):
            PixelMap.build(sw, bad, sw, shape)
    with pytest.raises(ValueError, match="oversample"):
        PixelMap.build(sw, shape, sw, shape, oversample=0)
    pm = PixelMap.build(sw, shape, sw, shape)
    with pytest.raises(ValueError, match=r"scene has shape \(21, 20\)"):
        pm(jnp.zeros((21, 20)))
    # a WCS with a spectral third axis: its celestial part is used
    cube = WCS(naxis=3)
    cube.wcs.ctype = ["RA---TAN", "DEC--TAN", "FREQ"]
    cube.wcs.crval = [*CRVAL, 1e9]
    cube.wcs.crpix = [*sw.wcs.crpix, 1.0]
    cube.wcs.cd = [[*sw.wcs.cd[0], 0.0], [*sw.wcs.cd[1], 0.0], [0.0, 0.0, 1e6]]
    pm3 = PixelMap.build(sw, shape, cube, shape)
    np.testing.assert_array_equal(pm3.weight, pm.weight)
    # identical grids: the identity (up to the bilinear kernel at sub-pixel points, which is symmetric)
    scene = np.random.default_rng(0).uniform(size=shape)
    assert float(pm(jnp.asarray(scene, jnp.float32)).sum()) == pytest.approx(scene.sum(), rel=1e-5)


def test_gather_arrays_are_jit_arguments():
    """Two maps through one compiled function: same shapes -> one compilation, each map's own result."""
    scene_shape, channel_shape = (60, 60), (24, 24)
    sw = tan_wcs(0.05, scene_shape)
    maps = [PixelMap.build(sw, scene_shape, tan_wcs(0.11, channel_shape, rot=r, offset=o), channel_shape)
            for r, o in ((0.2, (0.3, 0.1)), (-0.7, (-1.4, 2.2)))]
    k = max(m.n_terms for m in maps)
    f = jax.jit(lambda s, index, weight: apply(s, index, weight, channel_shape))
    scene = jnp.asarray(gaussians(scene_shape, [(5.0, 30.0, 28.0, 4.0)]), jnp.float32)
    outs = [np.asarray(f(scene, **m.arrays(pad_to=k))) for m in maps]
    assert f._cache_size() == 1
    for m, out in zip(maps, outs, strict=True):
        np.testing.assert_allclose(out, np.asarray(m(scene)), rtol=1e-5, atol=1e-7)
    assert np.abs(outs[0] - outs[1]).max() > 0.1 * outs[0].max()  # the two maps really differ
    # nothing of the map is compiled in: the program text is small next to the arrays
    text = f.lower(scene, **maps[0].arrays(pad_to=k)).as_text()
    assert len(text) < 5_000 < maps[0].weight.size
    flat = apply(scene, **maps[1].arrays())  # without channel_shape: the flattened channel
    np.testing.assert_allclose(np.asarray(flat).reshape(channel_shape), outs[1], rtol=1e-5, atol=1e-7)
    # batched scenes go through too
    both = maps[0](jnp.stack([scene, 2 * scene]))
    np.testing.assert_allclose(np.asarray(both[1]), 2 * outs[0], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="pad_to"):
        maps[0].arrays(pad_to=1)


# ---------------------------------------------------------------------------------------------- convolution

def test_fft_convolve_matches_direct_convolution():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(37, 50))
    image[0, :] += 5.0  # bright edges: wrap-round would put their flux on the opposite side
    image[:, -1] += 5.0
    for kshape in [(7, 9), (15, 15), (1, 3), (41, 11)]:  # (41, 11): kernel taller than the image
        kernel = rng.uniform(size=kshape)
        ref = scipy.signal.convolve2d(image, kernel, mode="same")
        out = np.asarray(fft_convolve(jnp.asarray(image, jnp.float32), jnp.asarray(kernel, jnp.float32)))
        assert out.shape == image.shape
        np.testing.assert_allclose(out, ref, atol=2e-6 * np.abs(ref).max())
    kernel = rng.uniform(size=(11, 11))
    ref = scipy.signal.convolve2d(image, kernel, mode="same")
    wide = np.asarray(fft_convolve(image, kernel, pad=(9, 20)))  # more padding than needed: same answer
    np.testing.assert_allclose(wide, ref, atol=2e-6 * np.abs(ref).max())
    conv = FFTConvolver.build(kernel, image.shape)
    assert conv.fft_shape[0] >= 37 + 5 and conv.fft_shape[1] >= 50 + 5
    batch = jnp.asarray(np.stack([image, -image]), jnp.float32)
    out = np.asarray(jax.jit(lambda img, kft: conv(img, kft))(batch, conv.kernel_ft))
    np.testing.assert_allclose(out[0], ref, atol=2e-6 * np.abs(ref).max())
    np.testing.assert_allclose(out[1], -ref, atol=2e-6 * np.abs(ref).max())
    np.testing.assert_allclose(np.asarray(conv(image)), ref, atol=2e-6 * np.abs(ref).max())
    # a kernel that changes inside the model: differentiable through transform
    g = jax.grad(lambda s: jnp.sum(conv(image, conv.transform(gaussian_psf(11, s))) ** 2))(2.0)
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_fft_convolve_errors():
    with pytest.raises(ValueError, match="odd sides"):
        fft_convolve(jnp.zeros((10, 10)), jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="smaller than the kernel half-width"):
        fft_convolve(jnp.zeros((10, 10)), jnp.ones((5, 5)), pad=1)
    with pytest.raises(ValueError, match="kernel must be 2-D"):
        fft_convolve(jnp.zeros((10, 10)), jnp.ones(5))
    conv = FFTConvolver.build(np.ones((3, 3)), (10, 12))
    with pytest.raises(ValueError, match="built for images of"):
        conv(jnp.zeros((12, 10)))


# ---------------------------------------------------------------------------------------------- PSFs

def test_normalized_psf_and_bad_psfs():
    psf = np.asarray(gaussian_psf(21, 2.0)) * 7.0
    out = normalized_psf(psf, image_shape=(50, 50))
    assert out.sum() == pytest.approx(1.0) and out.shape == (21, 21)
    bad = psf.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="PSF has NaN"):
        normalized_psf(bad)
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        normalized_psf(bad)
    with pytest.raises(ValueError, match="PSF sums to 0"):
        normalized_psf(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="PSF sums to -"):
        normalized_psf(-psf)
    with pytest.raises(ValueError, match="PSF 179x179 is larger than the image 50x50"):
        normalized_psf(np.ones((179, 179)), image_shape=(50, 50))
    with pytest.raises(ValueError, match="even side"):
        normalized_psf(np.ones((20, 21)))
    with pytest.raises(ValueError, match="2-D"):
        normalized_psf(np.ones((3, 3, 3)))
    fixed = normalized_psf(np.pad(psf, ((0, 1), (0, 1))), recenter=True)  # even sides, re-centred
    assert fixed.shape == (23, 23) and fixed.sum() == pytest.approx(1.0)


def test_recenter_psf():
    """An off-centre PSF on an even grid (like a real HST PSF) ends with its centroid on the middle pixel."""
    y, x = np.indices((40, 40))
    psf = np.exp(-0.5 * (((x - 21.3) / 2.5) ** 2 + ((y - 17.8) / 1.8) ** 2))
    psf += 0.3 * np.exp(-0.5 * (((x - 24.0) / 4.0) ** 2 + ((y - 16.0) / 4.0) ** 2))  # asymmetric wing
    out, (dy, dx) = recenter_psf(psf)
    assert out.shape == (41, 41)
    (cy, cx), _ = moments(out)
    assert abs(cy - 20) < 0.05 and abs(cx - 20) < 0.05
    assert out.sum() == pytest.approx(psf.sum(), rel=1e-3)
    (cy0, cx0), _ = moments(psf)
    assert dy == pytest.approx(20 - cy0, abs=0.05) and dx == pytest.approx(20 - cx0, abs=0.05)
    peak, _ = recenter_psf(psf, method="peak", size=(31, 31))
    assert peak.shape == (31, 31) and np.unravel_index(np.argmax(peak), peak.shape) == (15, 15)
    whole, (iy, ix) = recenter_psf(psf, subpixel=False)
    assert iy == round(iy) and ix == round(ix)
    (wy, wx), _ = moments(whole)
    assert abs(wy - 20) <= 0.5 and abs(wx - 20) <= 0.5
    assert np.all(whole >= 0)  # whole-pixel shifts do not resample
    with pytest.raises(ValueError, match="method"):
        recenter_psf(psf, method="mode")


def test_resample_psf_sum_and_moments():
    """Second moments scale as (from_scale / to_scale)^2, once each grid's pixel box (1/12 px^2) is removed.

    resample_psf adds a known variance of 1/4 input px^2 (bilinear interpolation); for sigma = 6 input
    pixels that is 0.7 % of the variance, so pure scaling holds to 1.5 % and the prediction including
    the 1/4 to 0.3 %.
    """
    sigma, from_scale = 6.0, 0.01
    psf = np.asarray(gaussian_psf(61, sigma, oversample=7), dtype=float)
    _, m_in = moments(psf)
    box = (7**2 - 1) / (12 * 7**2)
    np.testing.assert_allclose(m_in[:2], sigma**2 + box, rtol=1e-3)
    for to_scale in (0.03, 0.005):
        out = resample_psf(psf, from_scale, to_scale)
        assert out.sum() == pytest.approx(1.0) and out.shape[0] % 2 == 1
        side = math.ceil(61 * from_scale / to_scale)  # default: the smallest odd side covering the input
        assert out.shape == (side | 1, side | 1)
        (cy, cx), m_out = moments(out)
        c = (out.shape[0] - 1) / 2
        assert abs(cy - c) < 1e-3 and abs(cx - c) < 1e-3
        r2 = (from_scale / to_scale) ** 2
        np.testing.assert_allclose((m_out[:2] - 1 / 12) / r2, m_in[:2] - 1 / 12, rtol=0.015)
        np.testing.assert_allclose(m_out[:2], (m_in[:2] + 1 / 6) * r2 + 1 / 12, rtol=3e-3)
        assert abs(m_out[2]) < 1e-6
    with pytest.raises(ValueError, match="to_scale"):
        resample_psf(psf, 0.01, -1.0)
    with pytest.raises(ValueError, match="even side"):
        resample_psf(np.ones((10, 10)), 0.01, 0.02)


def test_gaussian_psf_moments_and_gradients():
    size, sigma, e, angle, m = 41, 3.0, 0.3, 0.5, 5
    psf = gaussian_psf(size, sigma, e, angle, oversample=m)
    assert psf.shape == (41, 41) and float(psf.sum()) == pytest.approx(1.0, rel=1e-6)
    (cy, cx), (iyy, ixx, ixy) = moments(psf)
    assert abs(cy - 20) < 1e-4 and abs(cx - 20) < 1e-4
    q = 1 - e
    smaj, smin = sigma**2 / q, sigma**2 * q
    c, s = math.cos(angle), math.sin(angle)
    box = (m * m - 1) / (12 * m * m)
    want = np.array([smaj * s * s + smin * c * c + box, smaj * c * c + smin * s * s + box,
                     (smaj - smin) * s * c])
    np.testing.assert_allclose([iyy, ixx, ixy], want, rtol=2e-3, atol=2e-3)

    # gradients for NumPyro sites: finite, and non-zero where they should be
    target = jnp.asarray(gaussian_psf(size, 2.5, 0.1, 0.2))
    loss = jax.jit(lambda p: jnp.sum((gaussian_psf(size, p[0], p[1], p[2]) - target) ** 2))
    for p in ([3.0, 0.3, 0.5], [3.0, 0.0, 0.0]):
        g = np.asarray(jax.grad(loss)(jnp.array(p)))
        assert np.all(np.isfinite(g)), g
        assert g[0] != 0 and g[1] != 0
    assert np.asarray(jax.grad(loss)(jnp.array([3.0, 0.3, 0.5])))[2] != 0
    with pytest.raises(ValueError, match="sigma"):
        gaussian_psf(11, 0.0)
    with pytest.raises(ValueError, match="ellipticity"):
        gaussian_psf(11, 1.0, ellipticity=1.0)
    with pytest.raises(ValueError, match="odd"):
        gaussian_psf(10, 1.0)


def test_moffat_psf():
    fwhm, beta = 5.0, 4.0
    psf = np.asarray(moffat_psf(81, fwhm, beta, oversample=5), dtype=float)
    assert psf.sum() == pytest.approx(1.0, rel=1e-5)  # float32
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    _, (iyy, ixx, ixy) = moments(psf)
    want = alpha**2 / (2 * (beta - 2)) + 24 / 300  # analytic variance + the 5x5 pixel box
    assert iyy == pytest.approx(want, rel=0.01) and ixx == pytest.approx(want, rel=0.01) and abs(ixy) < 1e-6
    # half maximum at fwhm / 2 along a row (profile sampled finely, no pixel integration)
    fine = np.asarray(moffat_psf(201, fwhm * 10, beta, oversample=1), dtype=float)
    row = fine[100] / fine[100, 100]
    assert np.interp(0.5, row[100:][::-1], np.arange(101)[::-1]) == pytest.approx(25.0, abs=0.05)
    # elongated along +x at angle 0, along +y at angle pi/2
    _, (yy, xx, _) = moments(moffat_psf(81, fwhm, beta, 0.4, 0.0))
    assert xx > 1.5 * yy
    _, (yy, xx, _) = moments(moffat_psf(81, fwhm, beta, 0.4, math.pi / 2))
    assert yy > 1.5 * xx
    g = jax.jit(jax.grad(lambda p: jnp.sum(moffat_psf(31, p[0], p[1], p[2], p[3]) ** 2)))(
        jnp.array([4.0, 3.0, 0.2, 0.3]))
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) != 0)
    with pytest.raises(ValueError, match="beta"):
        moffat_psf(11, 3.0, 1.0)
