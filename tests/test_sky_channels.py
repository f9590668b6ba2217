"""Channel I/O: reading channels (image, WCS, noise, DQ, PSF) from FITS, unit checks, noise estimates from
images, and writing images with their WCS atomically. Real-data tests use the shared HSC + HST cutouts and
skip when that folder is missing."""

import starmodels  # noqa: F401, I001  (first: configures JAX)

import math
import tomllib
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy.ndimage import uniform_filter

from starmodels.sky.channel import ChannelData, ChannelError, check_units
from starmodels.sky.channel_read import SPEC_KEYS, hsc_hst_data_dir, read_channel, read_channels
from starmodels.sky.image_fits import write_image_fits
from starmodels.sky.noise_estimate import estimate_sigma, neighbour_correlation
from starmodels.sky.masks import PixelCircle, mask_from_dq

try:
    DATA = hsc_hst_data_dir()
except FileNotFoundError:
    DATA = None
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "Cut_HSC.fits").is_file(),
                                reason="HSC/HST data folder not found (set STARMODELS_HSC_HST_DATA)")

SHAPE = (20, 30)


def tan_wcs(shape=SHAPE, scale=0.1, rot=0.0, crval=(150.1, 2.2)) -> WCS:
    """A TAN WCS of ``scale`` arcsec/px centred on the grid, pixel axes rotated by ``rot`` radians."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    d, c, s = scale / 3600.0, math.cos(rot), math.sin(rot)
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


def gaussian_stamp(size=11, sigma=1.5, centre=None) -> np.ndarray:
    c = (size - 1) / 2 if centre is None else centre
    y, x = np.indices((size, size))
    cy, cx = (c, c) if np.isscalar(c) else c
    return np.exp(-0.5 * ((y - cy) ** 2 + (x - cx) ** 2) / sigma**2)


def write_mef(path, sci, *, err=None, var=None, dq=None, bunit="nJy", band="F150W", wcs=None):
    """A multi-extension FITS file: empty primary, SCI (big-endian float32), then ERR / VAR / DQ."""
    header = (wcs or tan_wcs(sci.shape)).to_header()
    header["BUNIT"] = bunit
    header["FILTER"] = band
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(sci.astype(">f4"), header=header, name="SCI")]
    if err is not None:
        hdus.append(fits.ImageHDU(err.astype(">f4"), name="ERR"))
    if var is not None:
        hdus.append(fits.ImageHDU(var.astype(">f4"), name="VAR"))
    if dq is not None:
        hdus.append(fits.ImageHDU(dq.astype(">i2"), name="DQ"))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def mef(tmp_path):
    """SCI/ERR/DQ file: DQ bit 0 at (1, 1), bit 1 at (2, 2), bit 2 at (3, 3), NaN in SCI at (4, 4),
    NaN in ERR at (5, 5), ERR 0 at the DQ-flagged (1, 1)."""
    rng = np.random.default_rng(0)
    sci = rng.normal(10.0, 1.0, SHAPE)
    err = np.full(SHAPE, 0.5) + 0.01 * np.arange(SHAPE[1])
    dq = np.zeros(SHAPE, int)
    dq[1, 1], dq[2, 2], dq[3, 3] = 1, 2, 4
    sci[4, 4] = np.nan
    err[5, 5] = np.nan
    err[1, 1] = 0.0
    path = write_mef(tmp_path / "img.fits", sci, err=err, dq=dq)
    return path, sci, err, dq


# -- real data ---------------------------------------------------------------------------------------------

@needs_data
def test_real_hsc_plane_and_hst_image():
    config = tomllib.loads("""
        [[channels]]
        name = "hsc_i"
        path = "Cut_HSC.fits"
        plane = 2
        band = "i"
        psf = "PSF_HSC.fits"
        psf_plane = 2

        [[channels]]
        name = "hst"
        path = "Cut_HST.fits"
        psf = "PSF_HST.fits"
        band = "F814W"
        """)
    hsc, hst = read_channels(config, base_dir=DATA)
    for c, shape, scale in ((hsc, (50, 50), 0.168), (hst, (250, 250), 0.030)):
        assert c.image.shape == shape and c.mask.shape == shape and c.mask.all()
        assert c.image.dtype == np.float64 and c.image.dtype.isnative
        assert c.meta["byte_order_converted"] and c.meta["stored_dtype"].startswith(">")
        assert c.wcs.naxis == 2 and c.wcs.has_celestial
        assert c.pixel_scale == pytest.approx(scale, rel=0.01)
        assert c.sigma is None and c.unit == ""
        h, w = c.psf.shape
        assert h % 2 == 1 and w % 2 == 1 and c.psf.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.unravel_index(np.argmax(c.psf), c.psf.shape) == ((h - 1) // 2, (w - 1) // 2)
    # array centres on the sky (README facts table)
    assert hsc.wcs.pixel_to_world_values(24.5, 24.5) == pytest.approx((150.319169, 2.039394), abs=2e-6)
    assert hst.wcs.pixel_to_world_values(124.5, 124.5) == pytest.approx((150.319190, 2.039398), abs=2e-6)
    assert hsc.meta["radesys"] == "ICRS" and hst.meta["radesys"] == "FK5"
    # HSC PSF: peak already central, only normalised (raw sum 0.9974); HST: peak (90, 90) moved to (89, 89)
    assert not hsc.meta["psf_recentred"] and hsc.meta["psf_sum_raw"] == pytest.approx(0.99742, abs=1e-4)
    assert hst.meta["psf_recentred"] and hst.meta["psf_peak_raw"] == (90, 90)
    assert hst.meta["psf_shift"] == (-1.0, -1.0)
    assert hst.meta["psf_flux_kept"] > 0.999
    assert hst.meta["hdus"]["psf"] == "HDU 0 ('PRIMARY')" and hsc.meta["psf_plane"] == 2
    assert check_units([hsc, hst]) == {"hsc_i": 1.0, "hst": 1.0}


@needs_data
def test_real_noise_estimates():
    cube = fits.getdata(DATA / "Cut_HSC.fits")
    readme = (0.72, 0.43, 0.17, 0.15, 0.29)  # sigma-clipped scatter of source-free pixels (README)
    for k, ref in enumerate(readme):
        assert estimate_sigma(cube[k].astype(float)) == pytest.approx(ref, rel=0.15)
    hst = read_channel(DATA / "Cut_HST.fits")
    assert estimate_sigma(hst.image, hst.mask) == pytest.approx(4.1, rel=0.15)
    rho = neighbour_correlation(hst.image, hst.mask)
    assert 0.3 < rho.horizontal < 0.6 and 0.3 < rho.vertical < 0.6  # drizzled: correlated (README ~0.45)


@needs_data
def test_real_variance_and_mask_planes(tmp_path):
    """hsc_cosmos_35.npz: noise estimated from the images agrees with its variance planes; its variance and
    bit-mask planes, written as VAR / DQ extensions (with a stand-in TAN WCS: the archive has none), are read
    as sigma = sqrt(variance) and a DQ mask."""
    d = np.load(DATA / "hsc_cosmos_35.npz")
    for k in range(5):
        use = mask_from_dq(d["mask"][k], [2, 3, 10, 12, 14, 15])  # bit 5 (likely DETECTED) is not bad
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # y band: too few source-free pixels to mask sources
            est = estimate_sigma(d["images"][k], use)
        assert est == pytest.approx(np.sqrt(np.median(d["variance"][k][use])), rel=0.15)
    img, var, dq = d["images"][1], d["variance"][1], d["mask"][1]
    header = tan_wcs(img.shape, scale=0.168).to_header()
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(img, header=header, name="SCI"),
            fits.ImageHDU(var, name="VARIANCE"), fits.ImageHDU(dq, name="DQ")]
    fits.HDUList(hdus).writeto(tmp_path / "r.fits")
    c = read_channel(tmp_path / "r.fits", dq_bad_bits=[2, 3, 10, 12, 14, 15], band="r")
    np.testing.assert_allclose(c.sigma, np.sqrt(var.astype(np.float64)))
    np.testing.assert_array_equal(c.mask, mask_from_dq(dq, [2, 3, 10, 12, 14, 15]))
    assert c.meta["hdus"]["var"] == "HDU 2 ('VARIANCE')" and c.pixel_scale == pytest.approx(0.168)


# -- synthetic files -----------------------------------------------------------------------------------------

def test_sci_err_dq_masks_and_sigma(mef):
    path, sci, err, dq = mef
    c = read_channel(path, dq_bad_bits=[0, 2])
    assert c.name == "img" and c.unit == "nJy" and c.band == "F150W"
    assert c.meta["unit_source"].startswith("BUNIT") and c.meta["band_source"].startswith("FILTER")
    assert c.image.dtype == np.float64 and c.image.dtype.isnative and c.sigma.dtype.isnative
    used = ~np.isnan(err)
    np.testing.assert_allclose(c.sigma[used], err.astype(np.float32)[used])
    assert not c.mask[1, 1] and not c.mask[3, 3]  # bits 0 and 2 are bad
    assert c.mask[2, 2]  # bit 1 is not
    assert not c.mask[4, 4] and not c.mask[5, 5]  # NaN in SCI, NaN in ERR
    assert c.n_used == sci.size - 4
    m = c.meta["mask_from"]
    assert (m["dq"], m["nonfinite_image"], m["nonfinite_err"], m["used"]) == (2, 1, 1, sci.size - 4)
    assert c.meta["hdus"] == {"image": "HDU 1 ('SCI')", "err": "HDU 2 ('ERR')",
                              "dq": "HDU 3 ('DQ') (auto-detected by EXTNAME)"}
    assert "ERR" in c.meta["sigma_from"] and c.meta["dq_bad_bits"] == [0, 2]
    assert c.pixel_scale == pytest.approx(0.1, rel=1e-9)
    with pytest.raises(ValueError):
        c.image[0, 0] = 1.0  # read-only arrays
    # default bad bits: any set bit; err=False / dq=False switch auto-detection off
    assert not read_channel(path).mask[2, 2]
    plain = read_channel(path, err=False, dq=False)
    assert plain.sigma is None and plain.mask[1, 1] and "none" in plain.meta["sigma_from"]


def test_zero_err_in_used_pixel_is_reported(mef, tmp_path):
    path, sci, err, dq = mef
    with pytest.raises(ChannelError) as info:
        read_channel(path, dq_bad_bits=[1])  # (1, 1) has ERR = 0 and bit 0, now a used pixel
    msg = str(info.value)
    assert "img.fits" in msg and "HDU 2 ('ERR')" in msg and "1 zero value(s) in used pixels" in msg
    assert "(1, 1)" in msg
    # a user mask over that pixel fixes it
    assert not read_channel(path, dq_bad_bits=[1], mask=[PixelCircle(1, 1, 0.5)]).mask[1, 1]


def test_var_extension_and_separate_files(tmp_path):
    rng = np.random.default_rng(1)
    sci = rng.normal(0.0, 2.0, SHAPE)
    var = np.full(SHAPE, 4.0)
    var[0, 0] = -1.0
    dq = np.zeros(SHAPE, int)
    dq[0, 0] = 8
    path = write_mef(tmp_path / "v.fits", sci, var=var, dq=dq)
    c = read_channel(path)
    assert "sqrt of VAR" in c.meta["sigma_from"] and not c.mask[0, 0]
    np.testing.assert_allclose(c.sigma[1:], 2.0)
    # noise and PSF from separate files: "file.fits[EXT]" syntax, a Path, a PSF cube plane
    noise = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full(SHAPE, 9.0), name="MYVAR")])
    noise.writeto(tmp_path / "n.fits")
    psfs = np.stack([gaussian_stamp(7, 1.0), gaussian_stamp(7, 2.0)])
    fits.writeto(tmp_path / "psf.fits", psfs * 3.0)
    c2 = read_channel(path, var=str(tmp_path / "n.fits") + "[MYVAR]", dq=False, psf=tmp_path / "psf.fits",
                      psf_plane=1, name="sep")
    np.testing.assert_allclose(c2.sigma, 3.0)
    assert c2.meta["files"]["var"].endswith("n.fits") and c2.meta["hdus"]["var"] == "HDU 1 ('MYVAR')"
    np.testing.assert_allclose(c2.psf, psfs[1] / psfs[1].sum())
    assert c2.meta["psf_sum_raw"] == pytest.approx(3 * psfs[1].sum())


def test_extver_pairs_and_negative_variance(tmp_path):
    w = tan_wcs().to_header()
    hdus = [fits.PrimaryHDU()]
    for ver, s in ((1, 1.0), (2, 2.0)):
        hdus += [fits.ImageHDU(np.ones(SHAPE), header=w, name="SCI", ver=ver),
                 fits.ImageHDU(np.full(SHAPE, s), name="ERR", ver=ver)]
    fits.HDUList(hdus).writeto(tmp_path / "flt.fits")
    c = read_channel(tmp_path / "flt.fits", hdu=["SCI", 2])
    assert c.meta["hdus"]["err"] == "HDU 4 ('ERR')" and np.all(c.sigma == 2.0)
    var = np.full(SHAPE, 1.0)
    var[3, 4] = -2.0
    write_mef(tmp_path / "neg.fits", np.zeros(SHAPE), var=var)
    with pytest.raises(ValueError, match=r"VAR .*neg.fits HDU 2 \('VAR'\) has 1 negative value.*\(3, 4\)"):
        read_channel(tmp_path / "neg.fits")


def test_read_channels_reports_every_problem(tmp_path):
    cube = np.zeros((3, *SHAPE))
    write_image_fits(tmp_path / "cube.fits", cube, tan_wcs())
    fits.writeto(tmp_path / "nowcs.fits", np.zeros(SHAPE))
    fits.writeto(tmp_path / "bigpsf.fits", gaussian_stamp(31, 3.0))
    specs = [
        {"path": str(tmp_path / "missing.fits")},
        {"name": "c", "path": str(tmp_path / "cube.fits"), "plane": 5},
        {"name": "typo", "path": str(tmp_path / "cube.fits"), "plane": 0, "erro": "ERR"},
        {"name": "flat", "path": str(tmp_path / "nowcs.fits")},
        {"name": "psf", "path": str(tmp_path / "cube.fits"), "plane": 1,
         "psf": str(tmp_path / "bigpsf.fits")},
        {"name": "ok", "path": str(tmp_path / "cube.fits"), "plane": 2},
    ]
    with pytest.raises(ChannelError) as info:
        read_channels(specs)
    err = info.value
    assert len(err.problems) == 5, err.problems
    msg = str(err)
    assert "missing.fits: no such image file" in msg
    assert "plane=5 is out of range" in msg and "holds 3 planes (0 to 2)" in msg
    assert "unknown key 'erro' (did you mean 'err'?)" in msg
    assert "allowed keys: " + ", ".join(SPEC_KEYS) in msg
    assert "nowcs.fits HDU 0 ('PRIMARY') has no celestial WCS" in msg
    assert "31x31, larger than the image 20x30" in msg
    assert "image data were not read" in msg
    # relative paths against base_dir; the good channel alone reads
    (ok,) = read_channels({"channels": [{"name": "ok", "path": "cube.fits", "plane": 2}]}, base_dir=tmp_path)
    assert ok.shape == SHAPE and ok.meta["plane"] == 2


def test_data_problems_of_several_channels(tmp_path):
    write_mef(tmp_path / "a.fits", np.ones(SHAPE), dq=np.ones(SHAPE, int))
    write_mef(tmp_path / "b.fits", np.ones(SHAPE))
    zero = np.zeros((5, 5))
    with pytest.raises(ChannelError) as info:
        read_channels([{"name": "a", "path": tmp_path / "a.fits"},
                       {"name": "b", "path": tmp_path / "b.fits", "psf": zero},
                       {"name": "b", "path": tmp_path / "b.fits"}])
    assert any("names must be unique" in p for p in info.value.problems)
    with pytest.raises(ChannelError) as info:
        read_channels([{"name": "a", "path": tmp_path / "a.fits"},
                       {"name": "b", "path": tmp_path / "b.fits", "psf": zero}])
    msg = str(info.value)
    assert "channel 'a'" in msg and "the mask hides every pixel" in msg and "dq: 600" in msg
    assert "channel 'b'" in msg and "PSF sums to 0" in msg
    with pytest.raises(ChannelError, match="a 2-D image of shape .*plane=1 applies to cubes"):
        read_channel(tmp_path / "b.fits", plane=1)
    with pytest.raises(ChannelError, match="no extension 'NOPE'"):
        read_channel(tmp_path / "b.fits", hdu="NOPE")


def test_psf_recentring(tmp_path):
    write_mef(tmp_path / "p.fits", np.ones(SHAPE))
    off = gaussian_stamp(11, 1.2, centre=(5.3, 6.0))  # brightest pixel (5, 6), one column right
    c = read_channel(tmp_path / "p.fits", psf=off)
    assert c.meta["psf_shift"] == (0.0, -1.0) and c.meta["psf_peak_raw"] == (5, 6)
    assert np.unravel_index(np.argmax(c.psf), c.psf.shape) == (5, 5)
    sub = read_channel(tmp_path / "p.fits", psf=off, psf_recenter="centroid")
    assert sub.meta["psf_shift"] == pytest.approx((-0.3, -1.0), abs=0.01)
    even = read_channel(tmp_path / "p.fits", psf=gaussian_stamp(10, 1.2, centre=(4.5, 4.5)),
                        psf_recenter="subpixel")
    assert even.psf.shape == (11, 11) and even.meta["psf_shift"] == pytest.approx((0.5, 0.5), abs=0.05)
    with pytest.raises(ChannelError, match="even side"):
        read_channel(tmp_path / "p.fits", psf=gaussian_stamp(10, 1.2), psf_recenter="none")


# -- units ---------------------------------------------------------------------------------------------------

def test_check_units():
    def ch(name, unit):
        return ChannelData(name=name, image=np.ones(SHAPE), wcs=tan_wcs(), unit=unit)

    assert check_units([ch("a", ""), ch("b", "")]) == {"a": 1.0, "b": 1.0}
    assert check_units([ch("a", "nJy"), ch("b", "nanoJansky")]) == {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError, match=r"different units.*nJy: 'a'.*uJy: 'b'.*multiply by 1000"):
        check_units([ch("a", "nJy"), ch("b", "uJy")])
    with pytest.raises(ValueError, match=r"\(none\): 'b'.*free amplitude"):
        check_units([ch("a", "nJy"), ch("b", "")])
    assert check_units([ch("a", "nJy"), ch("b", "uJy")], {"uJy": 1000.0}) == {"a": 1.0, "b": 1000.0}
    assert check_units([ch("a", "nJy"), ch("b", "")], {"b": 2.5}) == {"a": 1.0, "b": 2.5}
    with pytest.raises(ValueError, match="finite numbers > 0"):
        check_units([ch("a", "nJy")], {"a": -1.0})


# -- noise from images ---------------------------------------------------------------------------------------

def smooth_scene(shape=(200, 200)) -> np.ndarray:
    y, x = np.indices(shape)
    return (30.0 * np.exp(-0.5 * ((x - 80) ** 2 + (y - 120) ** 2) / 15.0**2) + 0.02 * x - 0.01 * y
            + 5.0 * np.sin(x / 40.0))


def test_estimate_sigma_white_noise_on_smooth_image():
    rng = np.random.default_rng(4)
    for sigma in (0.5, 2.0):
        img = smooth_scene() + rng.normal(0.0, sigma, (200, 200))
        assert estimate_sigma(img) == pytest.approx(sigma, rel=0.05)
    mask = np.ones((200, 200), bool)
    mask[:, :100] = False
    img = smooth_scene() + rng.normal(0.0, 1.0, (200, 200))
    img[:, :100] = 1e6  # masked garbage is ignored
    assert estimate_sigma(img, mask) == pytest.approx(1.0, rel=0.05)
    # per-pixel map: left half sigma 1, right half sigma 3
    noise = rng.normal(0.0, 1.0, (100, 120)) * np.where(np.arange(120) < 60, 1.0, 3.0)
    m = estimate_sigma(noise, box=15, mask_sources=False)
    assert m.shape == (100, 120)
    assert np.median(m[:, 10:45]) == pytest.approx(1.0, rel=0.1)
    assert np.median(m[:, 75:110]) == pytest.approx(3.0, rel=0.1)
    with pytest.raises(ValueError, match="box must be an odd integer"):
        estimate_sigma(noise, box=4)
    with pytest.raises(ValueError, match="too few usable pixels"):
        estimate_sigma(np.zeros((5, 5)))


def test_neighbour_correlation_white_and_smoothed():
    rng = np.random.default_rng(5)
    white = rng.normal(0.0, 1.0, (200, 200))
    rho = neighbour_correlation(white)
    assert abs(rho.horizontal) < 0.05 and abs(rho.vertical) < 0.05 and rho.n_horizontal > 30000
    boxed = uniform_filter(rng.normal(0.0, 1.0, (200, 200)), 3, mode="wrap")  # true rho_1 = 2/3
    rho = neighbour_correlation(boxed + smooth_scene())
    assert rho.horizontal > 0.4 and rho.vertical > 0.4
    assert neighbour_correlation(boxed, lag=4).mean == pytest.approx(2 / 3, abs=0.05)
    # sigma of the smoothed noise: exact once the correlation has died out at the lag (3x3 box: lag 3)
    assert estimate_sigma(boxed) == pytest.approx(boxed.std(), rel=0.05)


# -- writing -------------------------------------------------------------------------------------------------

def test_write_image_fits_round_trip(tmp_path):
    w = tan_wcs(rot=0.3)
    data = np.arange(np.prod(SHAPE), dtype=">f8").reshape(SHAPE)
    path = write_image_fits(tmp_path / "out.fits", data, w, unit="nJy",
                            header_cards={"FILTER": "F150W", "EXPTIME": (120.0, "seconds")},
                            extra_hdus={"ERR": np.ones(SHAPE), "FLAGS": np.zeros(SHAPE, bool)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]  # no temporary file left
    with fits.open(path) as hdul:
        assert hdul[0].header["EXPTIME"] == 120.0 and hdul[0].header.comments["EXPTIME"] == "seconds"
        assert [h.name for h in hdul] == ["PRIMARY", "ERR", "FLAGS"] and hdul["FLAGS"].data.dtype == np.uint8
    c = read_channel(path, dq=False)  # the ERR extension is picked up as sigma
    np.testing.assert_array_equal(c.image, data)
    assert c.unit == "nJy" and c.band == "F150W" and np.all(c.sigma == 1.0)
    back = c.wcs
    np.testing.assert_allclose(back.wcs.crval, w.wcs.crval, rtol=0, atol=1e-12)
    np.testing.assert_allclose(back.pixel_scale_matrix, w.pixel_scale_matrix, rtol=1e-12, atol=0)
    assert list(back.wcs.ctype) == list(w.wcs.ctype)
    pix = ([0, 29, 13.5, 7], [0, 19, 4.25, 11])
    np.testing.assert_allclose(back.pixel_to_world_values(*pix), w.pixel_to_world_values(*pix), rtol=0,
                               atol=1e-11)
    # a cube: each plane reads back with the 2-D WCS
    cube = np.stack([data, 2 * data])
    write_image_fits(tmp_path / "cube.fits", cube, w)
    c1 = read_channel(tmp_path / "cube.fits", plane=1)
    np.testing.assert_array_equal(c1.image, 2 * data)
    np.testing.assert_allclose(c1.wcs.pixel_to_world_values(*pix), w.pixel_to_world_values(*pix), atol=1e-11)


def test_write_image_fits_errors(tmp_path):
    w = tan_wcs()
    with pytest.raises(ValueError, match="does not exist"):
        write_image_fits(tmp_path / "nope" / "x.fits", np.zeros(SHAPE), w)
    write_image_fits(tmp_path / "x.fits", np.zeros(SHAPE), w)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image_fits(tmp_path / "x.fits", np.ones(SHAPE), w)
    write_image_fits(tmp_path / "x.fits", np.ones(SHAPE), w, overwrite=True)
    assert fits.getdata(tmp_path / "x.fits").sum() == np.prod(SHAPE)
    with pytest.raises(ValueError, match="WCS keyword"):
        write_image_fits(tmp_path / "y.fits", np.zeros(SHAPE), w, header_cards={"CRVAL1": 1.0})
    with pytest.raises(ValueError, match="complex"):
        write_image_fits(tmp_path / "y.fits", np.zeros(SHAPE, complex), w)
    with pytest.raises(ValueError, match="not celestial"):
        write_image_fits(tmp_path / "y.fits", np.zeros(SHAPE), WCS(naxis=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.fits"]
