"""Bad input files and PSFs give clear errors that name the file and the problem, before any long work.

Small FITS files are written to tmp_path with astropy; the real SDSS files (``$STARMODELS_SDSS_DATA``,
default ``/work/shared/data/sdss``) are copied into tmp_path and cut or edited there, never in place.
"""

import bz2
import gzip
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import starmodels.io.fits_open as fits_mod
from starmodels.image_psf import ImagePSF, PSFError
from starmodels.io import (
    ExtensionNotFoundError,
    FileFormatError,
    KLPsf,
    Observation,
    ObservationError,
    PSFImage,
    read_image,
    read_photofield_calibration,
    read_psfield_calibration,
    read_sdss_frame,
    read_wcs,
    sdss_psf,
    write_image,
    write_observation,
)
from starmodels.io.fits_open import hdu_data

SDSS = Path(os.environ.get("STARMODELS_SDSS_DATA", "/work/shared/data/sdss"))
FIELD_DIR = SDSS / "2583" / "2" / "136"
FRAME = FIELD_DIR / "frame-r-002583-2-0136.fits.bz2"
PSFIELD = FIELD_DIR / "psField-002583-2-0136.fits"
PHOTOFIELD = SDSS / "2583" / "2" / "photoField-002583-2.fits"
needs_sdss = pytest.mark.skipif(not (FRAME.is_file() and PSFIELD.is_file() and PHOTOFIELD.is_file()),
                                reason=f"SDSS test data not found under {SDSS} (set STARMODELS_SDSS_DATA)")
TRUNCATED = "delete it and download or copy it again"


def _wcs_header(**changes) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [323.36, -0.82]
    w.wcs.crpix = [30.0, 25.0]
    w.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    h = w.to_header()
    for k, v in changes.items():
        h[k] = v
    return h


def _image_file(path, header=None, data=None, **extensions) -> Path:
    """PRIMARY + SCI (50 x 60 float32) + the given extensions (arrays or ready HDUs)."""
    sci = np.random.default_rng(0).normal(100.0, 5.0, (50, 60)).astype(np.float32) if data is None else data
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(sci, header, name="SCI")]
    for name, a in extensions.items():
        hdus.append(a if isinstance(a, fits.hdu.base._BaseHDU) else fits.ImageHDU(a, name=name))
    fits.HDUList(hdus).writeto(path)
    return Path(path)


@pytest.fixture
def good(tmp_path) -> Path:
    """A valid file: SCI, ERR (float32) and DQ (int16), 50 x 60 pixels, with a TAN WCS."""
    return _image_file(tmp_path / "good.fits", _wcs_header(), ERR=np.full((50, 60), 5.0, np.float32),
                       DQ=np.zeros((50, 60), np.int16))


def _cut(src: Path, dest: Path, n: int) -> Path:
    """The first ``n`` bytes of ``src`` (negative: all but the last ``-n``) written to ``dest``."""
    raw = src.read_bytes()
    dest.write_bytes(raw[:n])
    return dest


# -- 1. truncated and corrupt files --------------------------------------------------------------
def test_first_5000_bytes_cut_in_the_second_header(good, tmp_path):
    bad = _cut(good, tmp_path / "cut.fits", 5000)
    for read in (read_image, read_wcs, lambda p: read_image(p, hdu="SCI", err="ERR")):
        with pytest.raises(FileFormatError, match=r"cut\.fits: the header of HDU 1 of the FITS file is "
                                                  r"truncated or corrupt .*only HDU 0 can be read"):
            read(bad)


@pytest.mark.parametrize("where,n,hdu", [("in SCI data", 5760 + 6000, "HDU 1 \\('SCI'\\)"),
                                         ("in ERR data", -20000, "HDU 2 \\('ERR'\\)"),
                                         ("last data block", -2880, "HDU 3 \\('DQ'\\)")])
def test_cut_in_a_data_unit(good, tmp_path, where, n, hdu):
    bad = _cut(good, tmp_path / "cut.fits", n)
    with pytest.raises(FileFormatError, match=rf"cut\.fits: the FITS file is truncated: it holds \d+ bytes "
                                              rf"but its headers announce \d+; the data of {hdu} stop after"):
        read_image(bad, hdu="SCI")  # even though SCI alone may be complete: the file is cut


def test_missing_final_padding_only_warns_and_reads_the_data(good, tmp_path):
    bad = _cut(good, tmp_path / "pad.fits", -100)
    with pytest.warns(UserWarning, match=r"pad\.fits: the last 2880-byte block .* short by 100 bytes \(pad"):
        obs = read_image(bad, hdu="SCI", err="ERR", dq="DQ")
    np.testing.assert_array_equal(obs.data, fits.getdata(good, "SCI"))


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_short_data_from_a_lazily_opened_file_is_refused(good, tmp_path):
    """hdu_data checks the data against NAXISn even when astropy itself only warns."""
    bad = _cut(good, tmp_path / "cut.fits", 5760 + 6000)
    match = r"cut\.fits: cannot read the data of HDU 1 \('SCI'\).*truncated or corrupt"
    with fits.open(bad, memmap=False) as hdul, pytest.raises(FileFormatError, match=match):
        hdu_data(hdul, 1, bad)


@pytest.mark.parametrize("content,match", [
    (b"", r"the FITS file is empty \(0 bytes\); " + TRUNCATED),
    (np.random.default_rng(1).bytes(6000), r"not a FITS file: it is binary data starting b'"),
    (b"ra dec flux\n1.0 2.0 3.0\n" * 50, r"not a FITS file: it is a text file starting 'ra dec flux"),
    (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", r"not a FITS file: it is an HTML page"),
    (b"SIMPLE  =                    T" + b" " * 1000, r"only 1030 bytes, less than one 2880-byte FITS"),
])
def test_not_fits_at_all(tmp_path, content, match):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(content)
    with pytest.raises(FileFormatError, match=r"bad\.fits: .*" + match):
        read_image(bad)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.fits: no such FITS file"):
        read_image(tmp_path / "nope.fits")
    with pytest.raises(FileFormatError, match="not a regular file"):
        read_image(tmp_path)


@pytest.mark.parametrize("cut", [300, 3000, -100])  # -100: astropy alone silently drops the last HDUs
def test_truncated_gzip(good, tmp_path, cut):
    gz = tmp_path / "img.fits.gz"
    gz.write_bytes(gzip.compress(good.read_bytes())[:cut])
    with pytest.raises(FileFormatError, match=r"img\.fits\.gz: unreadable FITS file: the gzip stream is "
                                              r"truncated: it ends after \d+ decompressed bytes"):
        read_image(gz, hdu="SCI", err="ERR", dq="DQ")


def test_truncated_gzip_streamed_by_astropy(good, tmp_path, monkeypatch):
    """Files too large to decompress in memory: astropy alone would silently drop the cut HDUs."""
    monkeypatch.setattr(fits_mod, "MAX_DECOMPRESS_IN_MEMORY", 0)
    gz = tmp_path / "img.fits.gz"
    gz.write_bytes(gzip.compress(good.read_bytes())[:-100])
    with pytest.raises(FileFormatError, match=r"img\.fits\.gz: unreadable FITS file: the gzip stream is "
                                              r"truncated.*; only HDUs 0-\d can be read \(0 'PRIMARY'"):
        read_image(gz, hdu="SCI")
    gz.write_bytes(gzip.compress(good.read_bytes()))
    np.testing.assert_array_equal(read_image(gz, hdu="SCI").data, fits.getdata(good, "SCI"))


def test_complete_gzip_of_a_cut_fits_file(good, tmp_path):
    gz = tmp_path / "img.fits.gz"
    gz.write_bytes(gzip.compress(good.read_bytes()[:15000]))
    with pytest.raises(FileFormatError, match=r"img\.fits\.gz: the FITS file is truncated: it holds 15000 "
                                              r"bytes \(decompressed\) but its headers announce"):
        read_image(gz)


def test_tile_compressed_fits(tmp_path):
    sci = np.random.default_rng(3).normal(size=(60, 80)).astype(np.float32)
    fz = tmp_path / "img.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(sci, name="SCI")]).writeto(fz)
    assert read_image(fz).shape == (60, 80)  # stored size is that of the tile table, not of the image
    bad = _cut(fz, tmp_path / "cut.fits.fz", 7000)
    with pytest.raises(FileFormatError, match=r"cut\.fits\.fz: the FITS file is truncated: .*the data of "
                                              r"HDU 1 \('SCI'\) stop after"):
        read_image(bad)


def test_complete_gzip_and_bzip2_read_normally(good, tmp_path):
    (tmp_path / "a.fits.gz").write_bytes(gzip.compress(good.read_bytes()))
    (tmp_path / "a.fits.bz2").write_bytes(bz2.compress(good.read_bytes()))
    ref = read_image(good, err="ERR").data
    for name in ("a.fits.gz", "a.fits.bz2"):
        np.testing.assert_array_equal(read_image(tmp_path / name, err="ERR").data, ref)


@pytest.mark.parametrize("content,match", [
    (bz2.compress(b"SIMPLE  =" + np.random.default_rng(2).bytes(50000))[:2000],
     r"the bzip2 stream is truncated"),
    (bz2.compress(b"SIMPLE  =")[:12] + b"\x00" * 300, r"the bzip2 data are corrupt \(Invalid data stream\)"),
    (gzip.compress(b"hello world " * 100), r"it decompresses to a text file starting 'hello world"),
])
def test_bad_compressed_files(tmp_path, content, match):
    bad = tmp_path / "bad.fits.bz2"
    bad.write_bytes(content)
    with pytest.raises(FileFormatError, match=r"bad\.fits\.bz2: unreadable FITS file: " + match):
        read_image(bad)


@needs_sdss
@pytest.mark.parametrize("n", [5000, 1_500_000])
def test_truncated_sdss_frame(tmp_path, n):
    bad = _cut(FRAME, tmp_path / FRAME.name, n)
    with pytest.raises(FileFormatError, match=r"frame-r-002583-2-0136\.fits\.bz2: unreadable SDSS frame "
                                              r"file: the bzip2 stream is truncated"):
        read_sdss_frame(bad, gain=4.6, dark_variance=1.0)


@needs_sdss
def test_truncated_psfield_and_photofield(tmp_path):
    head = _cut(PSFIELD, tmp_path / "head.fits", 5000)
    half = _cut(PSFIELD, tmp_path / "half.fits", 200_000)
    for read in (lambda p: KLPsf.from_psfield(p, "r"), read_psfield_calibration,
                 lambda p: sdss_psf(p, "r", 680.0, 360.0)):
        with pytest.raises(FileFormatError, match=r"head\.fits: the header of HDU 1 of the SDSS psField file "
                                                  "is truncated or corrupt"):
            read(head)
        with pytest.raises(FileFormatError, match=r"half\.fits: the SDSS psField file is truncated: it "
                                                  r"holds 200000 bytes but its headers announce \d+; the "
                                                  r"data of HDU 5"):
            read(half)
    pf = _cut(PHOTOFIELD, tmp_path / "pf.fits", 400_000)
    with pytest.raises(FileFormatError, match=r"pf\.fits: the SDSS photoField file is truncated"):
        read_photofield_calibration(pf, 136)


@needs_sdss
def test_frame_with_a_truncated_psfield_beside_it_names_the_psfield(tmp_path):
    (tmp_path / FRAME.name).symlink_to(FRAME)
    _cut(PSFIELD, tmp_path / PSFIELD.name, 100_000)
    with pytest.raises(FileFormatError, match=r"psField-002583-2-0136\.fits: the SDSS psField file is "
                                              r"truncated"):
        read_sdss_frame(tmp_path / FRAME.name, cache_dir=tmp_path)


@needs_sdss
def test_wrong_kind_of_sdss_file():
    with pytest.raises(FileFormatError, match=r"psField-002583-2-0136\.fits: the band of the SDSS frame file "
                                              r"\(header FILTER, else the file name\) is ''"):
        read_sdss_frame(PSFIELD, gain=4.6, dark_variance=1.0)
    with pytest.raises(ExtensionNotFoundError, match=r"photoField-002583-2\.fits: no extension 6; extensions "
                                                     "present: 0 'PRIMARY'"):
        read_psfield_calibration(PHOTOFIELD)
    with pytest.raises(FileFormatError, match=r"HDU 1 of the SDSS photoField file has no column\(s\) FIELD, "
                                              r"GAIN, DARK_VARIANCE \(columns present: nrow_b"):
        read_photofield_calibration(PSFIELD, 136)
    with pytest.raises(ValueError, match=r"no row for field 999 \(the table covers fields 30-256\)"):
        read_photofield_calibration(PHOTOFIELD, 999)


def _synthetic_frame(path, calib=None, sky_columns=("ALLSKY", "XINTERP", "YINTERP"), **header):
    """A 20 x 30 SDSS-like frame: HDU0 image, HDU1 calibration vector, HDU2 sky table, HDU3 empty."""
    ny, nx = 20, 30
    hdr = _wcs_header()
    hdr.update({"RUN": 2583, "CAMCOL": 2, "FRAME": 136, "FILTER": "r", **header})
    cols = {"ALLSKY": ("6E", np.full((1, 2, 3), 150.0, np.float32)),
            "XINTERP": (f"{nx}E", np.linspace(0, 2, nx, dtype=np.float32)[None]),
            "YINTERP": (f"{ny}E", np.linspace(0, 1, ny, dtype=np.float32)[None])}
    sky = fits.BinTableHDU.from_columns([fits.Column(k, f, array=a, dim="(3,2)" if k == "ALLSKY" else None)
                                         for k, (f, a) in cols.items() if k in sky_columns])
    fits.HDUList([fits.PrimaryHDU(np.ones((ny, nx), np.float32), hdr),
                  fits.ImageHDU(np.full(nx, 0.005, np.float32) if calib is None else calib),
                  sky, fits.BinTableHDU.from_columns([fits.Column("A", "E", array=np.zeros(1))])]
                 ).writeto(path)
    return path


def test_sdss_frame_content_problems(tmp_path):
    name = "frame-r-002583-2-0136.fits"
    (tmp_path / "ok").mkdir()
    obs = read_sdss_frame(_synthetic_frame(tmp_path / "ok" / name), gain=4.6, dark_variance=1.0)
    assert obs.shape == (20, 30) and obs.unit == "electron"
    calib = np.full(30, 0.005, np.float32)
    calib[7] = 0.0
    cases = [({"calib": calib}, r"the calibration vector \(HDU 1\) of the SDSS frame file has 1 "
                                r"non-positive or non-finite value\(s\), first at column 7"),
             ({"calib": np.ones(12, np.float32)}, r"HDU 1 of the SDSS frame file should hold the calibration "
                                                  r"vector of 30 values"),
             ({"sky_columns": ("ALLSKY",)}, r"HDU 2 of the SDSS frame file should be the sky table; it has "
                                            r"no column\(s\) XINTERP, YINTERP"),
             ({"RUN": "abc"}, r"header keyword RUN = 'abc' of the SDSS frame file is not an integer"),
             ({"EXPTIME": "long"}, r"header keyword EXPTIME = 'long' of the SDSS frame file is not a number")]
    for i, (kw, match) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        bad = _synthetic_frame(tmp_path / str(i) / name, **kw)
        with pytest.raises(FileFormatError, match=rf"{i}/{name}: " + match):
            read_sdss_frame(bad, gain=4.6, dark_variance=1.0)


@needs_sdss
def test_psfield_with_garbage_content(tmp_path):
    with fits.open(PSFIELD) as hdul:
        hdul[3].data["RROWS"][2][100] = np.nan  # r band: one pixel of one eigen-image
        hdul[6].data["gain"][0][2] = -1.0  # r-band gain
        hdul.writeto(tmp_path / PSFIELD.name)
    bad = tmp_path / PSFIELD.name
    with pytest.raises(FileFormatError, match=r"HDU 3 \(r band\) of the SDSS psField file: 1 eigen-image "
                                              r"pixel\(s\) are NaN/inf"):
        KLPsf.from_psfield(bad, "r")
    assert KLPsf.from_psfield(bad, "i").band == "i"  # the other bands are fine
    _synthetic_frame(tmp_path / "frame-r-002583-2-0136.fits")
    with pytest.raises(FileFormatError, match=r"psField-002583-2-0136\.fits: unusable r-band calibration: "
                                              r"gain -1\.0 electrons/ADU.*pass gain= and dark_variance="):
        read_sdss_frame(tmp_path / "frame-r-002583-2-0136.fits", cache_dir=tmp_path)


# -- 2. complex-valued data ---------------------------------------------------------------------
def test_complex_data_is_refused(tmp_path):
    z = np.ones((4, 5)) * (1 + 2j)
    with pytest.raises(ObservationError, match=r"data: complex-valued data \(dtype complex128\) is not "
                                               r"supported.*np\.real\(data\) or np\.abs\(data\)"):
        Observation(z)
    with pytest.raises(ObservationError, match=r"^img\.fits: variance: complex-valued data"):
        Observation(np.ones((4, 5)), variance=z, meta={"source": "img.fits"})
    with pytest.raises(ObservationError, match=r"data: complex-valued data"):
        write_observation(tmp_path / "z.fits", z)
    obs = Observation(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"MODEL: complex-valued data \(dtype complex128\) cannot be "):
        write_observation(tmp_path / "z.fits", obs, model=z)
    with pytest.raises(ValueError, match=r"IMAG: complex-valued data"):
        write_image(tmp_path / "z.fits", IMAG=z)
    with pytest.raises(ValueError, match=r"MODEL: shape \(1, 5\) differs from the image's \(4, 5\)"):
        write_observation(tmp_path / "z.fits", obs, model=np.ones((1, 5)))
    assert not (tmp_path / "z.fits").exists()


# -- 3. PSFs ------------------------------------------------------------------------------------
def _gaussian(n=11, sd=1.5):
    yy, xx = np.indices((n, n)) - (n - 1) / 2
    return np.exp(-(xx**2 + yy**2) / (2 * sd**2))


def test_negative_psf_pixels_are_refused_unless_clipped(caplog):
    psf = _gaussian()
    psf[0, :3] = [-0.01, -0.002, -0.001]
    with pytest.raises(PSFError, match=r"ImagePSF: PSF has 3 negative pixel\(s\) \(the most negative -0\.01 "
                                       r"of the peak, together 0\.\d+% of the total\); pass negative='clip'"):
        ImagePSF(psf, pixel_scale=0.4)
    caplog.set_level(logging.INFO, logger="starmodels.image_psf")
    optics = ImagePSF(psf, pixel_scale=0.4, negative="clip")
    assert optics.clipped_fraction == pytest.approx(0.013 / psf.sum())
    assert float(optics.psf.min()) == 0.0 and float(optics.psf.sum()) == pytest.approx(1.0)
    assert "clipped 3 negative pixel(s) to zero" in caplog.text
    assert ImagePSF(_gaussian(), pixel_scale=0.4, negative="clip").clipped_fraction == 0.0


@pytest.mark.parametrize("psf,match", [
    (np.ones((2, 5, 5)), r"PSF must be a square 2-D image, got a 3-D array of shape \(2, 5, 5\)"),
    (np.ones((4, 5)), r"PSF must be a square 2-D image, got shape \(4, 5\)"),
    (np.where(_gaussian() > 0.5, np.inf, _gaussian()), r"PSF has 9 non-finite \(NaN/inf\) pixel\(s\), the "
                                                       r"first at index \(4, 4\)"),
    (np.zeros((5, 5)), r"PSF is all zeros"),
    (-np.ones((5, 5)), r"no pixel is positive.*; PSF must have a positive total, got -25"),
    (np.ones((5, 5)) * 1j, r"PSF is complex-valued \(dtype complex128\)"),
    (np.ones((0, 0)), r"PSF is empty"),
])
def test_unusable_psfs(psf, match):
    with pytest.raises(PSFError, match=r"^ImagePSF: .*" + match):
        ImagePSF(psf, pixel_scale=0.4)


def test_clipping_cannot_rescue_a_psf_with_a_negative_total():
    with pytest.raises(PSFError, match=r"PSF must have a positive total, got -1"):
        ImagePSF(np.diag([1.0, -3.0, 1.0]), pixel_scale=0.4, negative="clip")


@needs_sdss
def test_sdss_psf_negative_wings_are_clipped_visibly(caplog):
    from starmodels.starfield import star_field_model

    kl = KLPsf.from_psfield(PSFIELD, "r")
    raw = kl.at(679.5, 359.5, negative="keep")
    assert (raw < 0).sum() == raw.meta["n_negative"] > 100  # real KL PSFs have small negative wings
    assert -0.005 < raw.min() / raw.max() < 0
    with pytest.raises(PSFError, match=r"ImagePSF: PSF has \d+ negative pixel\(s\)"):
        ImagePSF(raw, pixel_scale=0.396)
    with pytest.raises(ValueError, match=r"psField-002583-2-0136\.fits: the r-band PSF at frame pixel \(row "
                                         r"679\.5, col 359\.5\) has \d+ negative pixel\(s\)"):
        kl.at(679.5, 359.5, negative="raise")
    caplog.set_level(logging.INFO, logger="starmodels.io.psfield")
    psf = kl.at_center_of(Observation(np.ones((106, 106)), meta={"origin": (627, 307)}))
    assert isinstance(psf, PSFImage) and psf.min() == 0.0 and psf.sum() == pytest.approx(1.0)
    assert psf.meta["negative"] == "clip" and 0.005 < psf.meta["clipped_fraction"] < 0.03  # ~1.06%
    assert psf.meta["n_negative"] == raw.meta["n_negative"] and psf.meta["band"] == "r"
    assert "clipped" in caplog.text and "of the PSF's total flux" in caplog.text
    assert sdss_psf(PSFIELD, "r", 679.5, 359.5).meta["clipped_fraction"] == psf.meta["clipped_fraction"]
    # so the star-field model takes the clipped survey PSF as it is
    blank = Observation(np.full((15, 15), 700.0), variance=np.full((15, 15), 721.0), gain=4.6, sky=700.0,
                        unit="electron", meta={"dark_variance": 1.0})
    stars = {"row": np.array([7.0]), "col": np.array([7.0]), "flux": np.array([1e4])}
    assert star_field_model(blank, psf, stars).optics.clipped_fraction == 0.0
    with pytest.raises(ValueError, match=r"more than the 10% that clipping may remove; the position is "
                                         r"outside the 1489 x 2048 frame"):
        kl.at(1e5, 1e5)


# -- 4. other bad content ----------------------------------------------------------------------
@pytest.mark.parametrize("change,match", [
    ({"CRVAL1": "abc"}, r"CRVAL1 = 'abc' is not a number"),
    ({"CDELT1": 0.0}, r"SingularMatrixError: Linear transformation matrix is singular"),
    ({"CTYPE1": "RA---XYZ"}, r"Unrecognized projection code \(XYZ in CTYPE1\)"),
])
def test_invalid_wcs(tmp_path, change, match):
    bad = _image_file(tmp_path / "w.fits", _wcs_header(**change))
    with pytest.raises(FileFormatError, match=r"w\.fits: invalid WCS in the header: .*" + match):
        read_image(bad)
    with pytest.raises(FileFormatError, match=match):
        read_wcs(bad)
    assert read_image(bad, wcs=False).wcs is None  # the way around it


def test_missing_wcs_when_one_is_needed(tmp_path):
    obs = read_image(_image_file(tmp_path / "nowcs.fits"))
    with pytest.raises(ObservationError, match=r"nowcs\.fits has no WCS, and sky coordinates or resampling"):
        obs.pixel_to_sky(1, 2)


def test_wrong_extensions_and_shapes(good, tmp_path):
    with pytest.raises(ExtensionNotFoundError, match=r"good\.fits: no extension 'VAR'; extensions present: "
                                                     r".*'ERR'"):
        read_image(good, hdu="SCI", var="VAR")
    table = fits.BinTableHDU.from_columns([fits.Column("a", "E", array=np.ones(3))], name="ERR")
    for name, kw, exc, match in [
            ("e.fits", {"ERR": np.ones((50, 59))}, ObservationError,
             r"ERR extension 'ERR' has shape \(50, 59\), image has \(50, 60\)"),
            ("t.fits", {"ERR": table}, FileFormatError,
             r"ERR extension 'ERR' is a table \(BinTableHDU\), not a 2-D image"),
            ("n.fits", {"ERR": fits.ImageHDU(name="ERR")}, FileFormatError,
             r"ERR extension 'ERR' has no data")]:
        with pytest.raises(exc, match=rf"{name}: " + match):
            read_image(_image_file(tmp_path / name, **kw), hdu="SCI", err="ERR")
    with pytest.raises(ObservationError, match=r"DQ extension 'DQ' has shape \(49, 60\)"):
        read_image(_image_file(tmp_path / "d.fits", DQ=np.zeros((49, 60), np.int16)), dq="DQ")
    with pytest.raises(ObservationError, match=r"image extension 'SCI' holds a 3-D array of shape "
                                               r"\(2, 50, 60\)"):
        read_image(_image_file(tmp_path / "c.fits", data=np.ones((2, 50, 60))), hdu="SCI")


def test_bad_variances(tmp_path):
    with pytest.raises(ObservationError, match=r"v\.fits: no usable pixel: of the 3000 pixels of HDU 1 "
                                               r"\('SCI'\), 3000 have a non-positive or non-finite variance "
                                               r"\(from var='VAR'; its finite values span -4 to -4"):
        read_image(_image_file(tmp_path / "v.fits", VAR=np.full((50, 60), -4.0)), var="VAR")
    with pytest.raises(ObservationError, match=r"from err='ERR'"):  # a negative sigma is not squared away
        read_image(_image_file(tmp_path / "e.fits", ERR=np.full((50, 60), -2.0)), err="ERR")
    var = np.full((50, 60), 4.0)
    var[3, :10] = 0.0
    obs = read_image(_image_file(tmp_path / "z.fits", VAR=var), var="VAR")
    assert obs.meta["masked_invalid"] == {"data": 0, "variance": 10} and (~obs.mask).sum() == 10
    with pytest.raises(ObservationError, match=r"variance is non-positive or non-finite at 10 used pixel"):
        read_image(tmp_path / "z.fits", var="VAR", mask_invalid=False)
    dq = np.zeros((50, 60))
    dq[0, :4] = np.nan
    assert (~read_image(_image_file(tmp_path / "q.fits", DQ=dq), dq="DQ", bad_bits=4).mask).sum() == 4


def test_unusable_gain_keywords_warn(tmp_path):
    with pytest.warns(UserWarning, match=r"g\.fits: header keyword GAIN = 'N/A' is not a positive number of "
                                         r"electrons per ADU; ignored \(pass gain= to read_image\)"):
        assert read_image(_image_file(tmp_path / "g.fits", fits.Header([("GAIN", "N/A")]))).gain is None
    with pytest.warns(UserWarning, match=r"GAIN = -2\.0 is not a positive number"):
        read_image(_image_file(tmp_path / "n.fits", fits.Header([("GAIN", -2.0)])))
    assert read_image(_image_file(tmp_path / "s.fits", fits.Header([("GAIN", "2.5")]))).gain == 2.5
    assert read_image(tmp_path / "g.fits", gain=3.0).gain == 3.0
