"""Cataloging a real SDSS field through the Python interface and the CLI, and its bad inputs."""


import jax
import numpy as np
import pytest
from astropy.table import Table

import starmodels as sm
from starmodels.cli import main
from starmodels.tiles.api import TileModel, load_tile_model
from starmodels.tiles.build import save_tile_model, setup_from_field
from starmodels.tiles.encoder import EncoderFileError, TileEncoder
from starmodels.tiles.field import m2_data_dir, m2_field
from starmodels.tiles.pipeline import ImageError, check_image

try:
    DATA = m2_data_dir()
except FileNotFoundError:
    DATA = None
pytestmark = pytest.mark.skipif(DATA is None, reason="shared SDSS data folder not found")
FRAMES = "2583/2/136/frame-{}-002583-2-0136.fits.bz2"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained, small encoder with the M2 field's prior and simulator: enough to exercise the I/O."""
    field = m2_field()
    prior, cfg, profiles, measured = setup_from_field(field, calibrate=False)   # I/O only: skip calibration
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=2, pixel_channels=4, tile_channels=4, n_pixel=1,
                      n_tile=1)
    from starmodels.tiles.instrument import config_to_dict

    meta = {"prior": prior.to_dict(), "simulator": config_to_dict(cfg, profiles, 25), "measured": measured}
    path = tmp_path_factory.mktemp("enc") / "tiny.eqx"
    save_tile_model(path, TileModel("m2_starfield", enc, prior, cfg, {"meta": meta}), command="test")
    return path, field


def test_python_catalog_of_a_field_has_units_and_sky_positions(tiny_model):
    path, field = tiny_model
    t = sm.catalog(field, encoder=path, min_p_exist=0.0)
    for col in ("row", "col", "row_sd", "ra", "dec", "p_exist", "flux_r", "flux_r_nmgy", "mag_r", "mag_i"):
        assert col in t.colnames
    assert str(t["ra"].unit) == "deg" and str(t["flux_r_nmgy"].unit) == "nmgy"
    if len(t):
        sky = field.wcs.pixel_to_world(t["col"][0], t["row"][0])
        assert abs(sky.ra.deg - t["ra"][0]) < 1e-9


def test_cli_writes_a_valid_ecsv_with_sky_coordinates(tiny_model, tmp_path, capsys):
    path, _ = tiny_model
    frames = [str(DATA / FRAMES.format(b)) for b in ("g", "r", "i")]   # an unused band first
    out = tmp_path / "cat"
    code = main(["catalog", *frames, "--center", "680", "360", "--size", "40", "--encoder", str(path),
                 "--min-p-exist", "0", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipping band g" in printed
    t = Table.read(out / "catalog.ecsv")
    assert {"ra", "dec", "flux_r_nmgy", "mag_r", "p_exist"} <= set(t.colnames)
    assert (out / "catalog.fits").is_file() and (out / "overlay.png").is_file()
    assert (out / "manifest.json").is_file()
    if len(t):
        assert np.all((t["row"] > -0.5) & (t["row"] < 39.5))


@pytest.mark.parametrize("case, message", [
    ("missing_band", "no frame for"),
    ("odd_size", "multiples of the tile size"),
    ("outside", "not inside"),
    ("no_position", "position"),
])
def test_cli_bad_inputs_are_clear_and_write_nothing(tiny_model, tmp_path, capsys, case, message):
    path, _ = tiny_model
    r, i = str(DATA / FRAMES.format("r")), str(DATA / FRAMES.format("i"))
    args = {"missing_band": [r, "--center", "680", "360", "--size", "40"],
            "odd_size": [r, i, "--center", "680", "360", "--size", "41"],
            "outside": [r, i, "--center", "5000", "360", "--size", "40"],
            "no_position": [r, i, "--size", "40"]}[case]
    out = tmp_path / "cat"
    code = main(["catalog", *args, "--encoder", str(path), "--out", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "manifest.json").exists() and not (out / "catalog.ecsv").exists()


def test_encoder_for_another_model_is_refused(tmp_path):
    from starmodels.tiles.encoder import save_encoder

    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=1, pixel_channels=4, tile_channels=4, n_pixel=1,
                      n_tile=1)
    p = tmp_path / "other.eqx"
    save_encoder(p, enc, {"model": "other_field"})
    with pytest.raises(EncoderFileError, match="other_field"):
        load_tile_model("m2_starfield", p)


def test_images_the_encoder_cannot_take_are_refused():
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=2, pixel_channels=4, tile_channels=4, n_pixel=1,
                      n_tile=1)
    good = np.full((2, 8, 8), 1000.0)
    assert check_image(good, enc).dtype == np.float32
    bad = good.copy()
    bad[1, 3, 4] = np.nan
    with pytest.raises(ImageError, match="non-finite"):
        check_image(bad, enc)
    with pytest.raises(ImageError, match="smaller than one"):
        check_image(np.full((2, 1, 8), 1000.0), enc)
    with pytest.raises(ImageError, match="needs 2 band"):
        check_image(np.full((3, 8, 8), 1000.0), enc)
