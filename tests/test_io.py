"""starmodels.io on real SDSS data (the M2 field) and on small FITS files written to tmp_path.

The SDSS files are read from ``$STARMODELS_SDSS_DATA`` (default ``/work/shared/data/sdss``);
the SDSS tests are skipped when it is absent. No test touches the network.
"""

import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import map_coordinates

import starmodels.io.sdss as sdss_mod
from starmodels.io import (
    ExtensionNotFoundError,
    KLPsf,
    Observation,
    ObservationError,
    download_sdss_frame,
    download_sdss_psfield,
    read_image,
    read_photofield_calibration,
    read_psfield_calibration,
    read_sdss_frame,
    read_wcs,
    sdss_cache_dir,
    sdss_sky,
    sdss_url,
    write_image,
    write_observation,
)

SDSS_DATA = Path(os.environ.get("STARMODELS_SDSS_DATA", "/work/shared/data/sdss"))
RUN, CAMCOL, FIELD = 2583, 2, 136
FIELD_DIR = SDSS_DATA / str(RUN) / str(CAMCOL) / str(FIELD)
PSFIELD = FIELD_DIR / f"psField-{RUN:06d}-{CAMCOL}-{FIELD:04d}.fits"
M2_ROWS, M2_COLS = (627, 733), (307, 413)  # the truth cutout frame-r[627:733, 307:413]
README_GAINS = dict(zip("ugriz", (1.825, 3.855, 4.6, 5.195, 5.155), strict=True))
TRUTH_NELEC_PER_NMGY = 856.098

needs_sdss = pytest.mark.skipif(
    not (FIELD_DIR / f"frame-r-{RUN:06d}-{CAMCOL}-{FIELD:04d}.fits.bz2").is_file(),
    reason=f"SDSS test data not found under {SDSS_DATA} (set STARMODELS_SDSS_DATA)")


def _no_network(*args, **kwargs):
    raise AssertionError("a test tried to use the network")


def _read_cached(band, **kw):
    """A frame read through the cache API, with every network path made to fail."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sdss_mod, "_fetch", _no_network)
        mp.setattr(urllib.request, "urlopen", _no_network)
        return read_sdss_frame((RUN, CAMCOL, FIELD, band), cache_dir=SDSS_DATA, **kw)


@pytest.fixture(scope="module")
def truth():
    if not (SDSS_DATA / "truth" / "true_hubble_m2.npz").is_file():
        pytest.skip(f"truth file not found under {SDSS_DATA}")
    return np.load(SDSS_DATA / "truth" / "true_hubble_m2.npz")


@pytest.fixture(scope="module")
def frame_r():
    """The r frame with the SDSS data-model (bilinear) sky."""
    return _read_cached("r")


@pytest.fixture(scope="module")
def frame_r_nearest():
    """The r frame with nearest-grid sky, the convention of the truth file (StarNet/BLISS)."""
    return _read_cached("r", sky_interp="nearest")


@pytest.fixture(scope="module")
def frame_i_nearest():
    return _read_cached("i", sky_interp="nearest")


# -- the SDSS reader against the truth file ----------------------------------------------
@needs_sdss
def test_sdss_r_cutout_equals_truth_to_float32_precision(frame_r_nearest, frame_r, truth):
    cut = frame_r_nearest.cutout(rows=M2_ROWS, cols=M2_COLS)
    ref = truth["sdss_image"][0]
    assert cut.unit == "electron" and cut.data.shape == ref.shape == (106, 106)
    rel = np.abs(cut.data.astype(float) - ref) / np.abs(ref)
    assert rel.max() < 2.5e-7  # ~2 float32 ulp; measured 1.2e-7 (0.004 e- of ~1e3-1e5 e-)
    # The data model's bilinear sky differs from the nearest-grid sky by < 1e-4 of the sky (~686 e-).
    lin = frame_r.cutout(rows=M2_ROWS, cols=M2_COLS)
    assert 0 < np.abs(lin.data - ref).max() < 0.05


@needs_sdss
def test_field_number_comes_from_the_file_name_not_the_frame_counter(frame_i_nearest):
    """The i frame's header FRAME is 138 (the CCD's counter); its field is 136, calibrated by its psField."""
    assert frame_i_nearest.meta["field"] == 136
    assert frame_i_nearest.meta["calibration_source"].endswith(PSFIELD.name)


@needs_sdss
def test_sdss_frame_units_gain_sky_variance(frame_r, frame_i_nearest):
    r = frame_r
    assert r.shape == (1489, 2048) and r.unit == "electron" and r.mask.all()
    assert r.gain == pytest.approx(README_GAINS["r"], rel=1e-6)
    assert frame_i_nearest.gain == pytest.approx(README_GAINS["i"], rel=1e-6)
    assert r.meta["calibration_source"].endswith(PSFIELD.name)
    assert r.pixel_scale == pytest.approx(0.396, abs=0.001)
    # Sky: positive everywhere, and in counts it agrees with the psField's global sky estimate.
    assert r.sky.min() > 0
    cal = read_psfield_calibration(PSFIELD)["r"]
    assert np.median(r.sky) / r.gain == pytest.approx(cal["sky"], rel=0.05)  # 150.75 counts
    # Variance: Poisson electrons + dark variance (counts^2) * gain^2; sky-dominated in the faint pixels.
    dv = r.meta["dark_variance"]
    assert dv == pytest.approx(1.0)
    np.testing.assert_allclose(r.variance, np.maximum(r.data, 0) + dv * r.gain**2, rtol=1e-6)
    # In an empty corner the robust scatter of the pixels matches the model (measured 27.28 vs 26.67 e-).
    patch = r.data[:150, 1900:]
    mad_sigma = 1.4826 * np.median(np.abs(patch - np.median(patch)))
    assert mad_sigma == pytest.approx(np.sqrt(np.median(r.variance[:150, 1900:])), rel=0.05)
    # The counts recovered are what the frame's nanomaggies divided by nelec_per_nmgy say.
    with fits.open(FIELD_DIR / "frame-r-002583-2-0136.fits.bz2") as h:
        nmgy = h[0].data[700, 350]
    assert (r.data[700, 350] - r.sky[700, 350]) / r.meta["nelec_per_nmgy"][700, 350] == pytest.approx(nmgy,
                                                                                                       rel=1e-5)


@needs_sdss
def test_nelec_per_nmgy_matches_truth(frame_r):
    nelec = frame_r.meta["nelec_per_nmgy"]
    assert nelec.shape == frame_r.shape
    # The truth's 856.098 is the frame-wide mean over columns of gain / calib.
    assert nelec[0].mean() == pytest.approx(TRUTH_NELEC_PER_NMGY, rel=2e-6)
    cut = frame_r.cutout(rows=M2_ROWS, cols=M2_COLS)
    assert cut.meta["nelec_per_nmgy"].shape == cut.shape
    assert cut.meta["nelec_per_nmgy"].mean() == pytest.approx(TRUTH_NELEC_PER_NMGY, rel=1e-3)


def test_gains_agree_between_psfield_photofield_and_readme():
    if not PSFIELD.is_file():
        pytest.skip(f"psField not found under {SDSS_DATA}")
    ps = read_psfield_calibration(PSFIELD)
    pf = read_photofield_calibration(SDSS_DATA / str(RUN) / str(CAMCOL) / "photoField-002583-2.fits", FIELD)
    for b, g in README_GAINS.items():
        assert ps[b]["gain"] == pytest.approx(g, rel=1e-6) and pf[b]["gain"] == pytest.approx(g, rel=1e-6)
        assert ps[b]["dark_variance"] == pytest.approx(pf[b]["dark_variance"])


@needs_sdss
def test_i_band_conversion_and_alignment(frame_r_nearest, frame_i_nearest, truth):
    ref = truth["sdss_image"][1]
    i = frame_i_nearest
    # SDSS bands are not registered: the same pixel box of the i frame is a different patch of sky.
    same_box = i.cutout(rows=M2_ROWS, cols=M2_COLS).data
    assert np.corrcoef(same_box.ravel(), ref.ravel())[0, 1] < 0.5
    # The truth shifted the i frame by a constant (row, col) offset fitted from Hubble stars; with that
    # offset our electrons reproduce it to the bilinear-interpolation round-off.
    rr, cc = np.mgrid[M2_ROWS[0]:M2_ROWS[1], M2_COLS[0]:M2_COLS[1]]
    shifted = map_coordinates(i.data.astype(float), [rr + 2.79932, cc - 0.58385], order=1)
    assert np.max(np.abs(shifted - ref) / ref) < 5e-4  # measured 8e-5
    # Aligning through the two WCSs lands within ~0.07 px of that offset.
    r_cut = frame_r_nearest.cutout(rows=M2_ROWS, cols=M2_COLS)
    aligned = i.align_to(r_cut)
    assert aligned.shape == r_cut.shape and aligned.mask.all() and aligned.meta["band"] == "i"
    assert np.corrcoef(aligned.data.ravel(), ref.ravel())[0, 1] > 0.998  # measured 0.9985
    assert np.median(np.abs(aligned.data - ref) / ref) < 0.01  # measured 0.0063
    # Bilinear weights sum to 1 and their squares to <= 1: variance never grows.
    assert np.all(aligned.variance <= i.variance.max())


def test_sdss_sky_interpolation_on_a_plane():
    yy, xx = np.mgrid[0:4, 0:5].astype(float)
    allsky = 10 + 2 * yy + 3 * xx
    x, y = np.array([-0.4, 0.0, 1.25, 4.0, 4.3]), np.array([0.5, 2.75, 3.2])
    lin = sdss_sky(allsky, x, y)  # bilinear is exact on a plane; clamped outside the grid
    xc, yc = np.clip(x, 0, 4), np.clip(y, 0, 3)
    np.testing.assert_allclose(lin, 10 + 2 * yc[:, None] + 3 * xc[None, :])
    near = sdss_sky(allsky, x, y, "nearest")
    np.testing.assert_allclose(near, 10 + 2 * np.round(yc)[:, None] + 3 * np.round(xc)[None, :])


def test_resample_by_whole_pixels_is_a_shift():
    w = _tan_wcs(20, 30)
    rng = np.random.default_rng(1)
    obs = Observation(rng.normal(size=(20, 30)), variance=rng.uniform(1, 2, (20, 30)), wcs=w, sky=5.0)
    target = w.deepcopy()
    target.wcs.crpix = w.wcs.crpix - np.array([2.0, 1.0])  # target pixel (r, c) = source (r + 1, c + 2)
    out = obs.resample_to(target, (20, 30))
    np.testing.assert_allclose(out.data[:19, :28], obs.data[1:, 2:], atol=1e-8)
    np.testing.assert_allclose(out.variance[:19, :28], obs.variance[1:, 2:], atol=1e-8)
    assert out.mask[:19, :28].all() and not out.mask[19].any() and not out.mask[:, 28:].any()
    assert out.sky == 5.0


# -- cutouts and WCS ------------------------------------------------------------------
@needs_sdss
def test_cutout_wcs_matches_parent(frame_r):
    (y0, y1), (x0, x1) = M2_ROWS, M2_COLS
    cut = frame_r.cutout(rows=M2_ROWS, cols=M2_COLS)
    assert cut.meta["origin"] == (y0, x0)
    np.testing.assert_array_equal(cut.data, frame_r.data[y0:y1, x0:x1])
    np.testing.assert_array_equal(cut.variance, frame_r.variance[y0:y1, x0:x1])
    np.testing.assert_array_equal(cut.sky, frame_r.sky[y0:y1, x0:x1])
    parent = read_wcs(frame_r.meta["header"])  # astropy WCS of the frame header
    assert isinstance(parent, WCS) and parent is not frame_r.wcs
    ii = np.array([0, 0, 105, 53, 17])
    jj = np.array([0, 105, 105, 20, 88])
    a = cut.pixel_to_sky(ii, jj)
    ra, dec = parent.all_pix2world(jj + x0, ii + y0, 0)  # astropy directly, 0-based (x, y)
    assert np.all(np.hypot((a.ra.deg - ra) * np.cos(np.deg2rad(dec)), a.dec.deg - dec) * 3600 < 1e-6)
    row, col = cut.sky_to_pixel(a)
    np.testing.assert_allclose(row, ii, atol=1e-6)
    np.testing.assert_allclose(col, jj, atol=1e-6)
    # A cutout of a cutout keeps the origin in the full frame.
    sub = cut.cutout(rows=(10, 20), cols=(5, 25))
    assert sub.meta["origin"] == (y0 + 10, x0 + 5)
    np.testing.assert_array_equal(sub.data, frame_r.data[y0 + 10:y0 + 20, x0 + 5:x0 + 25])
    with pytest.raises(ValueError, match="not inside"):
        frame_r.cutout(rows=(-1, 10), cols=(0, 10))


@needs_sdss
def test_cutout_by_sky_position_gives_the_box(frame_r):
    box = frame_r.cutout(rows=M2_ROWS, cols=M2_COLS)
    center = frame_r.pixel_to_sky(679.5, 359.5)  # centre of the even 106 x 106 box
    by_pix = frame_r.cutout(center=center, size=(106, 106))
    by_angle = frame_r.cutout(center=center, size=106 * frame_r.pixel_scale * u.arcsec)
    for c in (by_pix, by_angle):
        assert c.meta["origin"] == (M2_ROWS[0], M2_COLS[0])
        np.testing.assert_array_equal(c.data, box.data)
    assert box.center_sky.separation(center).arcsec < 1e-6
    odd = frame_r.cutout(center=(700, 400), size=5)
    assert odd.meta["origin"] == (698, 398) and odd.shape == (5, 5)


# -- the psField PSF --------------------------------------------------------------------
@pytest.fixture(scope="module")
def klpsf_r():
    if not PSFIELD.is_file():
        pytest.skip(f"psField not found under {SDSS_DATA}")
    return KLPsf.from_psfield(PSFIELD, "r")


def test_psf_normalised_and_centred(klpsf_r):
    psf = klpsf_r.at(679.5, 359.5)  # the centre of the M2 cutout, in full-frame pixels
    assert psf.shape == (51, 51) and psf.sum() == pytest.approx(1.0, abs=1e-12)
    yy, xx = np.mgrid[: psf.shape[0], : psf.shape[1]]
    assert abs((psf * yy).sum() - 25) < 0.1 and abs((psf * xx).sum() - 25) < 0.1
    assert np.unravel_index(psf.argmax(), psf.shape) == (25, 25)
    small = klpsf_r.at(679.5, 359.5, size=25)
    assert small.shape == (25, 25) and small.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(small, psf[13:38, 13:38] / psf[13:38, 13:38].sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        klpsf_r.at(0, 0, size=24)


def test_psf_matches_the_starnet_psf_image(klpsf_r):
    ref = fits.getdata(FIELD_DIR / "sdss-002583-2-0136-psf-r.fits").astype(float)
    # The 25x25 StarNet image is the raw (un-normalised) KL PSF at frame pixel row 600, col 500 -- the
    # example position of photoop's sdss_psf_recon(psfield, 600., 500.) -- not at the M2 cutout.
    # negative="keep": PHOTO's raw values, negative wings included (at() clips them by default).
    raw = klpsf_r.at(600, 500, size=25, normalize=False, negative="keep")
    assert np.abs(raw - ref).max() < 1e-7  # measured 1.0e-8
    # Row and column matter: the transposed position is ~1e5 times worse.
    assert np.abs(klpsf_r.at(500, 600, size=25, normalize=False, negative="keep") - ref).max() > 5e-4
    # At the M2 cutout centre the normalised PSFs differ by ~1% of the peak.
    psf = klpsf_r.at(679.5, 359.5, size=25)
    m2 = Observation(np.ones((106, 106)), meta={"origin": (M2_ROWS[0], M2_COLS[0])})
    np.testing.assert_array_equal(klpsf_r.at_center_of(m2, size=25), psf)
    refn = ref / ref.sum()
    assert np.abs(psf - refn).max() < 0.03 * refn.max()  # measured 0.0014 = 1.0% of the 0.141 peak
    assert np.corrcoef(psf.ravel(), refn.ravel())[0, 1] > 0.9999  # measured 0.999985


# -- validation ---------------------------------------------------------------------------
def test_validation_names_a_nan_pixel():
    d = np.ones((6, 7))
    d[3, 4] = np.nan
    with pytest.raises(ObservationError, match=r"non-finite.*\(row=3, col=4\)"):
        Observation(d)
    mask = np.ones(d.shape, bool)
    mask[3, 4] = False
    assert Observation(d, mask=mask).use.sum() == 41  # a masked NaN is fine


def test_validation_zero_variance_and_shapes():
    d = np.ones((5, 5))
    v = np.ones((5, 5))
    v[1, 2] = 0.0
    with pytest.raises(ObservationError, match=r"variance is non-positive.*\(row=1, col=2\)"):
        Observation(d, variance=v)
    with pytest.raises(ObservationError, match=r"variance shape \(5, 4\) != data shape \(5, 5\)"):
        Observation(d, variance=np.ones((5, 4)))
    with pytest.raises(ObservationError, match="sky shape"):
        Observation(d, sky=np.ones((4, 5)))
    with pytest.raises(ObservationError, match="mask must be boolean"):
        Observation(d, mask=np.ones((5, 5), int))
    with pytest.raises(ObservationError, match="excludes every pixel"):
        Observation(d, mask=np.zeros((5, 5), bool))


def test_validation_requires_wcs_when_asked():
    obs = Observation(np.ones((4, 4)))
    assert obs.validate() is obs
    with pytest.raises(ObservationError, match="WCS is required"):
        obs.validate(require_wcs=True)


def test_validation_reports_every_problem_in_one_error():
    d = np.ones((5, 5))
    d[0, 0] = np.inf
    v = -np.ones((5, 5))
    with pytest.raises(ObservationError) as err:
        Observation(d, variance=v, mask=np.ones((5, 6), bool), gain=-1.0)
    msg = str(err.value)
    assert "4 problem(s)" in msg
    for part in ("mask shape", "non-finite", "variance is non-positive", "gain must be positive"):
        assert part in msg


# -- generic FITS I/O -----------------------------------------------------------------
def _tan_wcs(ny=20, nx=30):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [323.36, -0.82]
    w.wcs.crpix = [nx / 2 + 0.3, ny / 2 - 0.2]
    w.wcs.cd = np.array([[-1.1e-4, 2e-6], [3e-6, 1.1e-4]])
    return w


def test_read_image_with_err_and_dq(tmp_path):
    rng = np.random.default_rng(0)
    sci = rng.normal(100, 5, (20, 30)).astype(np.float32)
    sci[2, 3] = np.nan
    err = np.full(sci.shape, 5.0, np.float32)
    dq = np.zeros(sci.shape, np.int16)
    dq[4, 5], dq[6, 7] = 4, 1
    hdr = _tan_wcs().to_header()
    hdr["BUNIT"], hdr["GAIN"] = "electron", 2.5
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, hdr, name="SCI"), fits.ImageHDU(err, name="ERR"),
                  fits.ImageHDU(dq, name="DQ")]).writeto(tmp_path / "img.fits")
    obs = read_image(tmp_path / "img.fits", err="ERR", dq="DQ", bad_bits=4)
    assert obs.unit == "electron" and obs.gain == 2.5 and obs.wcs is not None
    assert obs.meta["hdu"] == 1  # the first 2-D image HDU
    np.testing.assert_allclose(obs.variance, 25.0)
    assert not obs.mask[2, 3] and not obs.mask[4, 5] and obs.mask[6, 7]  # NaN and bit 4 masked, bit 1 kept
    assert (~obs.mask).sum() == 2
    assert not read_image(tmp_path / "img.fits", hdu="SCI", dq="DQ").mask[6, 7]  # any bit
    with pytest.raises(ExtensionNotFoundError) as err_info:
        read_image(tmp_path / "img.fits", hdu="SCI", var="VAR")
    msg = str(err_info.value)
    assert "img.fits" in msg and "'VAR'" in msg and "'SCI'" in msg and "'ERR'" in msg and "'DQ'" in msg
    with pytest.raises(ObservationError, match="non-finite"):
        read_image(tmp_path / "img.fits", err="ERR", mask_invalid=False)


def test_write_image_round_trips_the_wcs(tmp_path):
    w = _tan_wcs()
    data = np.arange(600.0).reshape(20, 30)
    path = write_image(tmp_path / "out.fits", DATA=data, MODEL=data * 0.5, RESIDUAL=data * 0.5, wcs=w,
                       header={"OBJECT": ("M2", "target")})
    with fits.open(path) as h:
        assert [x.name for x in h] == ["PRIMARY", "DATA", "MODEL", "RESIDUAL"]
        assert h[0].header["OBJECT"] == "M2"
    back = read_image(path, hdu="MODEL")
    np.testing.assert_array_equal(back.data, data * 0.5)
    rows, cols = np.array([0.0, 19.0, 7.3, 12.0]), np.array([0.0, 29.0, 3.2, 25.5])
    a, b = back.pixel_to_sky(rows, cols), Observation(data, wcs=w).pixel_to_sky(rows, cols)
    assert np.all(a.separation(b).arcsec < 1e-7)


@needs_sdss
def test_write_observation_round_trip(tmp_path, frame_r):
    cut = frame_r.cutout(rows=M2_ROWS, cols=M2_COLS)
    mask = cut.mask.copy()
    mask[5, 6] = False
    cut = cut.replace(mask=mask)
    path = write_observation(tmp_path / "m2.fits", cut, model=cut.sky)
    back = read_image(path, hdu="DATA", var="VAR", dq="DQ")
    np.testing.assert_array_equal(back.data, cut.data)
    np.testing.assert_array_equal(back.variance, cut.variance)
    np.testing.assert_array_equal(back.mask, mask)
    assert back.unit == "electron" and back.gain == pytest.approx(cut.gain)
    assert back.center_sky.separation(cut.center_sky).arcsec < 1e-6
    np.testing.assert_allclose(read_image(path, hdu="RESIDUAL").data, cut.data - cut.sky)


# -- the download helper (never the network) ---------------------------------------------
def test_sdss_urls_for_the_shared_field():
    assert sdss_url("frame", RUN, CAMCOL, FIELD, "r") == (
        "https://data.sdss.org/sas/dr17/eboss/photoObj/frames/301/2583/2/frame-r-002583-2-0136.fits.bz2")
    assert sdss_url("psField", RUN, CAMCOL, FIELD) == (
        "https://data.sdss.org/sas/dr17/eboss/photo/redux/301/2583/objcs/2/psField-002583-2-0136.fit")
    assert sdss_url("photoField", RUN, CAMCOL) == (
        "https://data.sdss.org/sas/dr17/eboss/photoObj/301/2583/photoField-002583-2.fits")
    with pytest.raises(ValueError, match="band"):
        sdss_url("frame", RUN, CAMCOL, FIELD, "x")


@needs_sdss
def test_cache_hit_makes_no_request(monkeypatch):
    monkeypatch.setattr(sdss_mod, "_fetch", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert download_sdss_frame(RUN, CAMCOL, FIELD, "r", cache_dir=SDSS_DATA) == (
        FIELD_DIR / "frame-r-002583-2-0136.fits.bz2")
    assert download_sdss_psfield(RUN, CAMCOL, FIELD, cache_dir=SDSS_DATA) == PSFIELD
    monkeypatch.setenv("STARMODELS_SDSS_CACHE", str(SDSS_DATA))
    assert sdss_cache_dir() == SDSS_DATA
    assert download_sdss_frame(RUN, CAMCOL, FIELD, "g").is_file()


def test_cache_miss_downloads_into_the_layout(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(url, dest, timeout=60.0):
        calls.append((url, dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"x")

    monkeypatch.setattr(sdss_mod, "_fetch", fake_fetch)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    p = download_sdss_frame(94, 1, 12, "z", cache_dir=tmp_path)
    assert p == tmp_path / "94" / "1" / "12" / "frame-z-000094-1-0012.fits.bz2" and p.is_file()
    assert calls == [(sdss_url("frame", 94, 1, 12, "z"), p)]
    assert download_sdss_frame(94, 1, 12, "z", cache_dir=tmp_path) == p and len(calls) == 1  # now cached
    with pytest.raises(FileNotFoundError, match="download=True"):
        read_sdss_frame((94, 1, 12, "r"), cache_dir=tmp_path)  # not cached and no download allowed
    assert len(calls) == 1


@needs_sdss
def test_missing_calibration_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sdss_mod, "_fetch", _no_network)
    frame = tmp_path / "frame-r-002583-2-0136.fits.bz2"
    frame.symlink_to(FIELD_DIR / frame.name)
    with pytest.raises(FileNotFoundError, match="no gain"):
        read_sdss_frame(frame, cache_dir=tmp_path)
