"""Stars rendered with the SDSS psField PSF: detection, K-star fit, catalog in physical units, FITS out."""

import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import starmodels as sm
from starmodels.io import KLPsf, Observation, read_wcs
from starmodels.posterior_catalog import star_catalog, write_model_images
from starmodels.starfield import detect_stars, star_field_model

SDSS = Path(os.environ.get("STARMODELS_SDSS_DATA", "/work/shared/data/sdss"))
PSFIELD = SDSS / "2583" / "2" / "136" / "psField-002583-2-0136.fits"
N, GAIN, DARK, SKY, NELEC = 21, 4.6, 1.0, 700.0, 856.1
TRUE = {"row": np.array([10.3, 4.8, 15.6]), "col": np.array([9.6, 14.2, 4.1]),
        "flux": np.array([2.0e5, 4.0e4, 1.2e4])}


def _wcs():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [323.36, -0.82]
    w.wcs.crpix = [11.0, 11.0]
    w.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    return w


@pytest.fixture(scope="module")
def scene():
    if not PSFIELD.is_file():
        pytest.skip(f"SDSS test data not found at {SDSS} (set STARMODELS_SDSS_DATA)")
    psf = KLPsf.from_psfield(PSFIELD, "r").at(680.0, 360.0)
    blank = Observation(np.full((N, N), SKY), variance=np.full((N, N), SKY + DARK * GAIN**2), wcs=_wcs(),
                        gain=GAIN, sky=SKY, unit="electron",
                        meta={"dark_variance": DARK, "nelec_per_nmgy": NELEC, "band": "r"})
    truth_model = star_field_model(blank, psf, TRUE)
    truth = {"source.x": (TRUE["col"] - 10) * 0.396, "source.y": (TRUE["row"] - 10) * 0.396,
             "source.flux": TRUE["flux"], "detector.background": SKY}
    data = truth_model.simulate(truth, seed=4)
    obs = blank.replace(data=data, variance=np.maximum(data, 0) + DARK * GAIN**2)
    return obs, psf


@pytest.fixture(scope="module")
def fitted(scene):
    obs, psf = scene
    found = detect_stars(obs, psf, threshold=5.0)
    model = star_field_model(obs, psf, found)
    post = sm.fit(model, obs.data, num_chains=2, num_warmup=300, num_draws=1000, seed=1, progress=False)
    return found, model, post


def test_detection_finds_the_simulated_stars(fitted):
    found, _, _ = fitted
    assert len(found) == 3
    d = np.hypot(found["row"][:, None] - TRUE["row"], found["col"][:, None] - TRUE["col"])
    assert np.all(d.min(1) < 1.0) and list(np.argmin(d, 1)) == [0, 1, 2]  # sorted by flux


def test_k_star_fit_recovers_positions_fluxes_and_sky(fitted, scene):
    obs, _ = scene
    _, _, post = fitted
    diag = post.diagnostics()
    assert diag["divergences"] == 0 and diag["max_r_hat"] < 1.02
    cat = star_catalog(post, obs)
    for name, truth in (("row", TRUE["row"]), ("col", TRUE["col"]), ("flux_e", TRUE["flux"])):
        z = (np.asarray(cat[name]) - truth) / np.asarray(cat[f"{name}_sd"])
        assert np.all(np.abs(z) < 3.5), (name, z)
    sky = post.draws()["detector.background"].ravel()
    assert abs(sky.mean() - SKY) < 4 * sky.std()


def test_catalog_units_sky_coordinates_and_files(fitted, scene, tmp_path):
    obs, _ = scene
    _, model, post = fitted
    cat = star_catalog(post, obs)
    assert cat["flux_e"].unit == "electron" and cat["mag"].unit == "mag" and cat["ra"].unit == "deg"
    assert np.allclose(cat["mag"], 22.5 - 2.5 * np.log10(cat["flux_nmgy"]), atol=0.02)
    assert np.allclose(cat["flux_nmgy"], cat["flux_e"] / NELEC, rtol=1e-5)
    sky = obs.wcs.pixel_to_world(np.asarray(cat["col"]), np.asarray(cat["row"]))
    assert np.allclose(cat["ra"], sky.ra.deg) and np.allclose(cat["dec"], sky.dec.deg)
    assert np.all(cat["flux_e_lo"] < cat["flux_e"]) and np.all(cat["flux_e"] < cat["flux_e_hi"])
    for name in ("cat.ecsv", "cat.fits"):
        cat.write(tmp_path / name)
        back = Table.read(tmp_path / name)
        assert np.allclose(back["flux_e"], cat["flux_e"]) and str(back["ra"].unit) == "deg"
    path = write_model_images(tmp_path / "model.fits", model, obs, post.mean())
    with fits.open(path) as hdul:
        assert [h.name for h in hdul[1:]] == ["DATA", "MODEL", "RESIDUAL"]
        w = read_wcs(hdul["MODEL"].header)
        resid = hdul["RESIDUAL"].data
        assert np.allclose(hdul["DATA"].data - hdul["MODEL"].data, resid)
    px = np.array([[0.0, 0.0], [5.5, 17.25], [20.0, 3.0]])
    assert np.allclose(w.pixel_to_world_values(px[:, 0], px[:, 1]),
                       obs.wcs.pixel_to_world_values(px[:, 0], px[:, 1]), atol=1e-10)
    assert np.abs(resid).max() < 8 * np.sqrt(obs.data.max())  # the model explains the bright cores


def test_star_field_model_rejects_bad_input(scene):
    obs, psf = scene
    with pytest.raises(ValueError, match="square"):
        star_field_model(obs.cutout(rows=(0, 20), cols=(0, 21)), psf, TRUE)
    with pytest.raises(ValueError, match="positive flux"):
        star_field_model(obs, psf, {"row": [3.0], "col": [4.0], "flux": [-1.0]})
    with pytest.raises(ValueError, match="non-finite"):
        star_field_model(obs, np.full((5, 5), np.nan), TRUE)
