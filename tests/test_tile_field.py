"""starmodels.tiles.field on the shared SDSS data (the M2 field, run 2583 camcol 2 field 136).

The data folder is ``$STARMODELS_SDSS_DATA``, else ``../shared/data/sdss`` next to the repository;
every test is skipped when it is missing. Frames are read at most four times in all (module fixtures);
the error tests fail on headers alone, before any frame is decompressed (checked by making the frame
reader raise).
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

import starmodels.tiles.field as field_mod
from starmodels.image_psf import PSFError
from starmodels.io import KLPsf, read_psfield_calibration, read_sdss_frame
from starmodels.tiles.field import (
    M2_ORIGIN,
    M2_SIZE,
    Field,
    FieldError,
    load_sdss_field,
    m2_data_dir,
    m2_field,
)

try:
    DATA = m2_data_dir()
except FileNotFoundError as e:
    DATA, WHY = None, str(e)
else:
    WHY = ""
FIELD_DIR = DATA / "2583" / "2" / "136" if DATA else Path("missing")
FRAME = {b: FIELD_DIR / f"frame-{b}-002583-2-0136.fits.bz2" for b in "griz"}
PSFIELD = FIELD_DIR / "psField-002583-2-0136.fits"
TRUTH = DATA / "truth" / "true_hubble_m2.npz" if DATA else Path("missing")
pytestmark = pytest.mark.skipif(DATA is None or not FRAME["r"].is_file() or not TRUTH.is_file(),
                                reason=f"shared SDSS data not available ({WHY or FIELD_DIR})")
README_GAINS = {"r": 4.6, "i": 5.195}
# the truth file's i image is the i frame resampled (bilinear) at this constant shift from the r box
# (fitted: residual <= 1.6 electrons); the WCS offset at the cutout centre is (+2.8355, -0.5145)
TRUTH_I_SHIFT = (2.7993, -0.5838)


@pytest.fixture(scope="module")
def m2():
    return m2_field(DATA)


@pytest.fixture(scope="module")
def truth():
    return np.load(TRUTH)["sdss_image"]


@pytest.fixture(scope="module")
def r_frame():
    return read_sdss_frame(FRAME["r"])


@pytest.fixture
def no_read(monkeypatch):
    """Make reading frame pixels fail: errors must come from the headers alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("the frame pixels were read before the error was found")
    monkeypatch.setattr(field_mod, "read_sdss_frame", refuse)


@pytest.fixture
def fake_read(monkeypatch, r_frame):
    """Frame reads answered from the r frame read once (for tests of the box logic)."""
    monkeypatch.setattr(field_mod, "read_sdss_frame", lambda *a, **k: r_frame)
    return r_frame


# -- the M2 benchmark -------------------------------------------------------------------------------------
def test_m2_r_equals_truth(m2, truth):
    """r equals the truth file's sdss_image[0]; with the nearest-grid sky exactly up to float32 rounding."""
    assert m2.image.shape == (2, *M2_SIZE) and m2.image.dtype == np.float32
    # linear sky interpolation (SDSS data model; the default) differs by at most 1.3e-5 of the pixel
    np.testing.assert_allclose(m2.image[0], truth[0], rtol=2e-5, atol=0)
    near = load_sdss_field([FRAME["r"]], origin=M2_ORIGIN, size=M2_SIZE, sky_interp="nearest", psf="images")
    # the truth was computed in float32 as img * (gain / calib) + sky * gain; ours in float64, then rounded
    np.testing.assert_allclose(near.image[0], truth[0], rtol=2.4e-7, atol=0)
    assert near.meta["psf_source"][0].endswith("sdss-002583-2-0136-psf-r.fits")


def test_m2_bands_cut_at_the_same_sky(m2):
    np.testing.assert_array_equal(m2.origin, [[627, 307], [630, 306]])
    np.testing.assert_allclose(m2.meta["band_offset_at_center"][1], (2.8355, -0.5145), atol=2e-3)
    np.testing.assert_allclose(m2.band_offsets, [[0, 0], [-0.1645, 0.4855]], atol=2e-3)
    assert np.all(np.abs(m2.band_offsets) <= 0.5)
    assert 0 < m2.band_offset_variation[1] < 0.05 and m2.band_offset_variation[0] == 0
    # the brightest star: same pixel in both cutouts; centroids differ by the band offset
    peaks = [np.unravel_index(np.argmax(im), im.shape) for im in m2.image]
    assert peaks[0] == peaks[1] == (34, 62)
    cents = []
    for im in m2.image:
        win = im[32:37, 60:65].astype(float) - np.median(im)
        yy, xx = np.mgrid[32:37, 60:65]
        cents.append(((win * yy).sum() / win.sum(), (win * xx).sum() / win.sum()))
    np.testing.assert_allclose(np.subtract(cents[1], cents[0]), m2.band_offsets[1], atol=0.15)
    # the cutout WCS of band 0 is the frame's, shifted to the origin; every band sees the same sky there
    for b, w in enumerate(m2.meta["band_wcs"]):
        sky = w.pixel_to_world(*(np.array([52.5, 52.5]) + m2.band_offsets[b][::-1]))
        assert sky.separation(m2.wcs.pixel_to_world(52.5, 52.5)).arcsec < 0.01


def test_truth_i_is_resampled_not_the_same_pixel_box(m2, truth):
    """The truth file's i image is not frame-i[627:733, 307:413]: it is the i frame bilinearly resampled
    onto the r box (constant shift ~ the WCS offset); the field's i is cut at the WCS-matched box."""
    fi = m2.image[1].astype(float)
    # frame-i[627:730, 308:413] (the truth's pixel box) from the i cutout at (630, 306)
    same_box = fi[:-3, 1:]
    rel = np.abs(same_box - truth[1][3:, :-1]) / truth[1][3:, :-1]
    assert np.median(rel) > 0.05
    rr, cc = np.mgrid[0:106, 0:106].astype(float)
    dy, dx = TRUTH_I_SHIFT[0] - 3, TRUTH_I_SHIFT[1] + 1  # relative to the i cutout's origin
    resampled = map_coordinates(fi, [rr + dy, cc + dx], order=1)
    inner = (slice(1, 106), slice(0, 105))
    np.testing.assert_allclose(resampled[inner], truth[1][inner], rtol=2e-4)


def test_m2_psf_and_calibration(m2):
    assert m2.psf.shape == (2, 25, 25)
    np.testing.assert_allclose(m2.psf.sum(axis=(1, 2)), 1.0, atol=1e-12)
    for b, band in enumerate(m2.bands):
        assert np.unravel_index(np.argmax(m2.psf[b]), (25, 25)) == (12, 12)
        rc, cc = m2.origin[b] + (np.array(M2_SIZE) - 1) / 2
        kl = KLPsf.from_psfield(PSFIELD, band).at(rc, cc, size=25)
        np.testing.assert_allclose(m2.psf[b], kl, atol=1e-12)
        cal = read_psfield_calibration(PSFIELD)[band]
        assert m2.gain[b] == pytest.approx(README_GAINS[band], rel=1e-6)
        assert m2.dark_variance[b] == pytest.approx(cal["dark_variance"] * cal["gain"] ** 2)
        assert m2.meta["frames"][b]["field"] == 136  # not the header's FRAME (138 in i)
        assert m2.meta["frames"][b]["calibration_source"] == str(PSFIELD)
    # electrons per nanomaggy: per column; 856.098 of the truth file is the mean over the whole r frame
    assert m2.nelec_per_nmgy[0] == pytest.approx(856.34, abs=0.01)
    assert m2.nelec_per_nmgy_map.shape == m2.image.shape
    assert m2.bands == ("r", "i") and m2.meta["run"] == 2583 and m2.meta["field"] == 136


def test_m2_sky_below_the_image(m2):
    """The frame sky is flat across the cutout and well below even the 5th percentile: the unresolved
    cluster light (measured: r 225 e-, i 306 e- above the sky at the 5th percentile)."""
    for b in range(2):
        sky, im = m2.sky[b], m2.image[b]
        assert np.ptp(sky) < 1e-3 * sky.mean()
        assert np.percentile(im, 5) - sky.mean() > 150


# -- the box ------------------------------------------------------------------------------------------------
def test_center_radec_and_origin_give_one_box(fake_read, m2):
    by_center = load_sdss_field([FRAME["r"]], center=(679.5, 359.5), size=106, psf="images")
    ra, dec = m2.meta["center_radec"]
    by_radec = load_sdss_field([FRAME["r"]], ra=ra, dec=dec, size=(106, 106), psf="images")
    for f in (by_center, by_radec):
        np.testing.assert_array_equal(f.origin, [M2_ORIGIN])
        np.testing.assert_array_equal(f.image[0], fake_read.data[627:733, 307:413])
    odd = load_sdss_field([FRAME["r"]], center=(100.2, 200.7), size=(9, 11), psf="images")
    np.testing.assert_array_equal(odd.origin, [[96, 196]])


def test_nan_inside_the_box(monkeypatch, r_frame):
    data = r_frame.data.copy()
    data[650, 320] = np.nan
    bad = r_frame.replace(data=data, mask=np.isfinite(data))
    monkeypatch.setattr(field_mod, "read_sdss_frame", lambda *a, **k: bad)
    with pytest.raises(FieldError, match=r"1 NaN/inf pixel.*row 650, col 320"):
        load_sdss_field([FRAME["r"]], origin=M2_ORIGIN, size=M2_SIZE, psf="images")


@pytest.mark.parametrize("kwargs, match", [
    (dict(origin=(1450, 10), size=106), r"rows 1450:1556, cols 10:116 is not inside the 1489 x 2048 frame.*"
                                        r"extends 67 px past the bottom"),
    (dict(origin=(-3, 2000), size=106), r"3 px past the top.*58 px past the right"),
    (dict(origin=(1382, 10), size=106), r"WCS-matched i-band box rows 1385:1491.*2 px past the bottom"),
    (dict(origin=M2_ORIGIN, size=4), r"4 x 4 pixels is smaller than min_size = 8"),
    (dict(origin=M2_ORIGIN, center=(1, 2), size=10), r"exactly one of"),
    (dict(size=10), r"exactly one of"),
    (dict(ra=323.3, size=10), r"exactly one of"),
    (dict(origin=M2_ORIGIN, size=10, bands=("r", "g")),
     r"no frame for band\(s\) \['g'\].*bands \['r', 'i'\]"),
    (dict(origin=M2_ORIGIN, size=10, bands=("r", "r")), r"more than once"),
    (dict(origin=M2_ORIGIN, size=10, psf_size=24), r"psf_size must be an odd"),
    (dict(origin=M2_ORIGIN, size=10, psf="gaussian"), r"psf must be 'psfield', 'images'"),
    (dict(origin=M2_ORIGIN, size=10, psf=[np.ones((25, 25)) / 625]), r"1 PSF\(s\) for 2 band"),
    (dict(origin=M2_ORIGIN, size=10, psfield="/nonexistent/psField.fits"), r"no psField"),
])
def test_bad_requests_fail_before_reading_pixels(no_read, kwargs, match):
    with pytest.raises(FieldError, match=match):
        load_sdss_field([FRAME["r"], FRAME["i"]], **kwargs)


def test_band_given_twice(no_read, tmp_path):
    with pytest.raises(FieldError, match=r"band 'r' given twice: .*frame-r.* and .*frame-r"):
        load_sdss_field([FRAME["r"], FRAME["r"]], origin=M2_ORIGIN, size=10)


def _gauss(n=25, sigma=1.5, centre=None, total=1.0):
    c = (n - 1) / 2 if centre is None else centre
    yy, xx = np.indices((n, n))
    g = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * sigma**2))
    return g / g.sum() * total


@pytest.mark.parametrize("psf, match", [
    (lambda: {"r": _gauss(total=0.5), "i": _gauss()},
     r"the r-band PSF \(array\).*sums to 0\.5, not 1 within 5%"),
    (lambda: [_gauss(), _gauss(total=1.07)], r"the i-band PSF \(array\).*sums to 1\.07"),
    (lambda: [_gauss(24), _gauss()], r"r-band.*side 24 is even"),
    (lambda: [_gauss(centre=(15.0)), _gauss()], r"r-band.*not centred"),
    (lambda: np.stack([_gauss(), np.full((25, 25), np.nan)]), r"i-band.*non-finite"),
    (lambda: {"r": _gauss()}, r"no PSF for band\(s\) \['i'\]"),
])
def test_bad_psf_arrays(no_read, psf, match):
    with pytest.raises((PSFError, FieldError), match=match):
        load_sdss_field([FRAME["r"], FRAME["i"]], origin=M2_ORIGIN, size=10, psf=psf())


def test_psf_arrays_resized_and_normalised(fake_read):
    f = load_sdss_field([FRAME["r"]], origin=M2_ORIGIN, size=10, psf=[_gauss(31, total=1.03)], psf_size=21)
    assert f.psf.shape == (1, 21, 21) and f.psf.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(f.psf[0], _gauss(31)[5:26, 5:26] / _gauss(31)[5:26, 5:26].sum())
    f = load_sdss_field([FRAME["r"]], origin=M2_ORIGIN, size=10, psf=[_gauss(11)], psf_size=15)
    assert f.psf.shape == (1, 15, 15) and f.psf[0, 2:13, 2:13] == pytest.approx(_gauss(11))


def test_m2_field_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        m2_field(tmp_path / "nowhere")
    with pytest.raises(FieldError, match="must start with 'r'"):
        m2_field(DATA, bands=("i", "r"))
    with pytest.raises(FileNotFoundError, match="frame-r-002583-2-0136"):
        m2_field(tmp_path)


def test_field_validates_its_arrays():
    ok = dict(image=np.zeros((1, 8, 8)), sky=np.zeros((1, 8, 8)), psf=_gauss(5)[None], band_offsets=[[0, 0]],
              bands=("r",), gain=[4.6], nelec_per_nmgy=[856.0], dark_variance=[21.2], wcs=None,
              origin=[[0, 0]])
    f = Field(**ok)
    assert f.shape == (8, 8) and f.n_bands == 1 and f.band_index("r") == 0 and f.variance.shape == (1, 8, 8)
    with pytest.raises(FieldError, match=r"psf must be \(B=1, S, S\) with odd S"):
        Field(**{**ok, "psf": np.ones((1, 4, 4)) / 16})
    with pytest.raises(FieldError, match="sky shape"):
        Field(**{**ok, "sky": np.zeros((1, 8, 7))})
    with pytest.raises(FieldError, match="psf stamps must sum to 1"):
        Field(**{**ok, "psf": 2 * _gauss(5)[None]})
