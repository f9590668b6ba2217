"""Tile / full catalogs (starmodels.tiles.catalog) and flux units (starmodels.tiles.units)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

from starmodels.tiles import units
from starmodels.tiles.catalog import (
    CatalogError,
    FullCatalog,
    TileCatalog,
    crop,
    full_to_tile,
    full_to_tile_jax,
    tile_to_full,
)

BANDS = ("r", "i")


def random_tiles(seed, batch=(), nth=4, ntw=5, ts=4, m=2, dyadic=False):
    """0 to m sources per tile; about a third of the coordinates exactly 0 (on a tile edge)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(0, m + 1, batch + (nth, ntw)).astype(np.int32)
    shape = batch + (nth, ntw, m)
    locs = rng.integers(0, 16, shape + (2,)) / 16 if dyadic else rng.uniform(size=shape + (2,))
    locs[rng.uniform(size=locs.shape) < 0.3] = 0.0
    fluxes = rng.uniform(10, 1000, shape + (len(BANDS),))
    on = (np.arange(m) < n[..., None])[..., None]
    return TileCatalog(n, np.where(on, locs, 0), np.where(on, fluxes, 0), ts, BANDS).sorted().validate()


def one_image(plocs, fluxes, height=16, width=20, n_max=None):
    """FullCatalog from (n, 2) positions and (n,) or (n, B) fluxes, padded to n_max rows."""
    plocs = np.asarray(plocs, float).reshape(-1, 2)
    fluxes = np.asarray(fluxes, float).reshape(len(plocs), -1) * np.ones(len(BANDS))
    t = Table({"row": plocs[:, 0], "col": plocs[:, 1], "flux_r": fluxes[:, 0], "flux_i": fluxes[:, 1]})
    return FullCatalog.from_table(t, height, width, max_sources=n_max)


def as_set(fc):
    """Valid sources as rows (row, col, fluxes...) sorted lexicographically (one unbatched catalog)."""
    n = int(fc.n_sources)
    rows = np.concatenate([np.asarray(fc.plocs)[:n], np.asarray(fc.fluxes)[:n]], -1)
    return rows[np.lexsort(rows.T[::-1])]


# ---------------------------------------------------------------- conversions


def test_tile_full_tile_exact_on_dyadic_locations():
    tc = random_tiles(0, batch=(3,), dyadic=True)
    assert (tc.locs == 0).any() and (tc.n_sources == 0).any() and (tc.n_sources == 2).any()
    fc = tile_to_full(tc)
    assert fc.plocs.shape == (3, 4 * 5 * 2, 2) and (fc.height, fc.width) == (16, 20)
    np.testing.assert_array_equal(fc.n_sources, tc.n_sources.sum((-2, -1)))
    back = full_to_tile(fc, 4, 2)
    for name in ("n_sources", "locs", "fluxes"):
        np.testing.assert_array_equal(getattr(back, name), getattr(tc, name))


def test_tile_full_tile_random_locations():
    tc = random_tiles(1, batch=(2,), m=3)
    back = full_to_tile(tile_to_full(tc), 4, 3)
    np.testing.assert_array_equal(back.n_sources, tc.n_sources)
    np.testing.assert_array_equal(back.fluxes, tc.fluxes)
    np.testing.assert_allclose(back.locs, tc.locs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.locs == 0, tc.locs == 0)   # sources on edges stay in their tile


def test_tile_edges_are_half_open():
    # ts = 4: tile 1 starts at row 3.5; the image ends at 16 - 0.5 and 20 - 0.5 (outside).
    fc = one_image([[3.5, -0.5], [3.4999, 7.5], [15.49, 19.49]], [3.0, 2.0, 1.0])
    tc = full_to_tile(fc, 4, 1)
    assert tc.n_sources.sum() == 3
    assert tc.n_sources[1, 0] == 1 and tc.n_sources[0, 2] == 1 and tc.n_sources[3, 4] == 1
    np.testing.assert_array_equal(tc.locs[1, 0, 0], [0.0, 0.0])
    np.testing.assert_array_equal(tc.locs[0, 2, 0, 1], 0.0)
    np.testing.assert_allclose(tc.locs[0, 2, 0, 0], 0.999975)
    with pytest.raises(CatalogError, match="1 valid sources lie outside"):
        full_to_tile(one_image([[15.5, 0.0]], [1.0]), 4, 1)


def test_full_tile_full_as_sets():
    rng = np.random.default_rng(2)
    plocs = rng.uniform([-0.5, -0.5], [15.5, 19.5], (25, 2))
    plocs[:3] = [[-0.5, -0.5], [7.5, 3.5], [11.5, 0.0]]            # corners and edges of tiles
    fc = one_image(plocs, rng.uniform(1, 100, (25, 2)), n_max=40)
    tc = full_to_tile(fc, 4, 25)
    assert tc.max_sources == 25 and tc.n_sources.sum() == 25
    back = tile_to_full(tc)
    np.testing.assert_allclose(as_set(back), as_set(fc), atol=1e-12)


def test_jit_tile_to_full_matches_eager():
    tc = random_tiles(3, batch=(2,))
    eager = tile_to_full(tc)
    jitted = jax.jit(tile_to_full)(jax.tree.map(jnp.asarray, tc))
    assert isinstance(jitted.plocs, jax.Array) and jitted.bands == BANDS
    np.testing.assert_array_equal(jitted.n_sources, eager.n_sources)
    np.testing.assert_allclose(jitted.plocs, eager.plocs, atol=1e-5)
    np.testing.assert_allclose(jitted.fluxes, eager.fluxes, rtol=1e-6)


def test_full_to_tile_jax_matches_eager_and_reports_drops():
    rng = np.random.default_rng(4)
    plocs = np.concatenate([rng.uniform(-0.5, 15.5, (30, 2)), [[1.0, 1.0]] * 3, [[-3.0, 2.0]]])
    fc = one_image(plocs, rng.uniform(1, 100, (34, 2)), height=16, width=16, n_max=40)
    tc, dropped = full_to_tile(fc, 4, 2, overflow="keep_brightest", outside="drop")
    tj, dj = jax.jit(full_to_tile_jax, static_argnums=(1, 2))(jax.tree.map(jnp.asarray, fc), 4, 2)
    assert int(dropped.outside) == int(dj.outside) == 1
    assert int(dropped.overflow) == int(dj.overflow) > 0
    np.testing.assert_array_equal(tj.n_sources, tc.n_sources)
    np.testing.assert_allclose(tj.locs, tc.locs, atol=1e-5)
    np.testing.assert_allclose(tj.fluxes, tc.fluxes, rtol=1e-6)


def test_overflow_raises_or_keeps_brightest():
    fc = one_image([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [9.0, 9.0]], [5.0, 7.0, 6.0, 1.0])
    with pytest.raises(CatalogError, match=r"1 of 20 tiles receive more than max_sources=2 .*up to 3"):
        full_to_tile(fc, 4, 2)
    tc, dropped = full_to_tile(fc, 4, 2, overflow="keep_brightest")
    assert int(dropped.overflow) == 1 and int(dropped.outside) == 0
    np.testing.assert_array_equal(tc.fluxes[0, 0, :, 0], [7.0, 6.0])
    assert tc.n_sources.sum() == 3


def test_outside_raises_or_drops():
    fc = one_image([[-0.6, 3.0], [2.0, 19.5], [5.0, 5.0]], [1.0, 2.0, 3.0])
    with pytest.raises(CatalogError, match="2 valid sources lie outside the 16 x 20 image"):
        full_to_tile(fc, 4, 2)
    tc, dropped = full_to_tile(fc, 4, 2, outside="drop")
    assert int(dropped.outside) == 2 and int(dropped.overflow) == 0 and tc.n_sources.sum() == 1


def test_image_not_multiple_of_tile_size():
    with pytest.raises(CatalogError, match=r"not a multiple of tile_size=4.*crop\(fc, 0, 0, 16, 20\)"):
        full_to_tile(one_image([[1.0, 1.0]], [1.0], height=18, width=21), 4, 2)


# ---------------------------------------------------------------- crops and filters


def test_crop_and_crop_tiles_agree():
    tc = random_tiles(5, m=3)
    fc = tile_to_full(tc)
    cut = crop(fc, 4, 4, 8, 12)
    assert (cut.height, cut.width) == (8, 12) and cut.max_sources == fc.max_sources
    inside = as_set(fc)
    rows, cols = inside[:, 0], inside[:, 1]
    inside = inside[(rows >= 3.5) & (rows < 11.5) & (cols >= 3.5) & (cols < 15.5)]
    np.testing.assert_allclose(as_set(cut), inside - [4, 4, 0, 0], atol=1e-12)
    by_tiles = tc.crop_tiles(1)
    assert (by_tiles.n_tiles_h, by_tiles.n_tiles_w, by_tiles.height) == (2, 3, 8)
    np.testing.assert_allclose(as_set(tile_to_full(by_tiles)), as_set(cut), atol=1e-12)
    np.testing.assert_array_equal(full_to_tile(cut, 4, 3).n_sources, by_tiles.n_sources)
    jitted = jax.jit(lambda f, r: crop(f, r, 4, 8, 12))(jax.tree.map(jnp.asarray, fc), 4)
    np.testing.assert_allclose(as_set(jitted), as_set(cut), atol=1e-4)
    with pytest.raises(CatalogError, match="leave a tile"):
        tc.crop_tiles(2)


def test_filters():
    fc = one_image([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]], [[50, 1], [200, 2], [100, 3], [0, 4]])
    np.testing.assert_array_equal(fc.select_flux(min_flux=100).fluxes[:2, 0], [200, 100])
    assert int(fc.select_flux(min_flux=100).n_sources) == 2
    assert int(fc.select_flux(max_flux=100).n_sources) == 2                # 50 and 0
    assert int(fc.select_flux(max_flux=3, band="i").n_sources) == 2
    kept = fc.filter(np.array([True, False, True, True]))
    np.testing.assert_array_equal(kept.plocs[:3, 0], [1, 3, 4])
    assert (kept.plocs[3] == 0).all() and (kept.fluxes[3] == 0).all()
    conv = 100.0                                                          # 100 e- = 1 nMgy = 22.5 mag
    bright = fc.select_mag(conv, max_mag=22.5)
    np.testing.assert_array_equal(bright.fluxes[: int(bright.n_sources), 0], [200])
    assert int(fc.select_mag(conv, min_mag=22.5).n_sources) == 3           # 0 e- has infinite mag
    tc = random_tiles(6, m=3)
    sel = tc.select_flux(min_flux=300).validate()
    assert (sel.fluxes[..., 0][sel.is_on] >= 300).all()
    assert sel.n_sources.sum() == (tc.fluxes[..., 0][tc.is_on] >= 300).sum()


def test_table_round_trip_and_units():
    fc = tile_to_full(random_tiles(7))
    t = fc.to_table()
    assert t.colnames == ["row", "col", "flux_r", "flux_i"] and len(t) == int(fc.n_sources)
    assert str(t["row"].unit) == "pix" and str(t["flux_i"].unit) == "electron"
    back = FullCatalog.from_table(t)
    assert (back.height, back.width, back.bands) == (16, 20, BANDS)
    np.testing.assert_array_equal(as_set(back), as_set(fc))
    t["flux_r"].unit = "nmgy"
    with pytest.raises(CatalogError, match="'flux_r' is in nmgy"):
        FullCatalog.from_table(t)
    with pytest.raises(CatalogError, match="batch"):
        tile_to_full(random_tiles(7, batch=(2,))).to_table()


# ---------------------------------------------------------------- sky


def test_sky_round_trip_through_origin():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [229.64, 2.08]
    wcs.wcs.crpix = [101.0, 81.0]                        # 1-based FITS: 0-based pixel (row 80, col 100)
    wcs.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    origin = (30, 40)
    fc = one_image([[50.0, 60.0], [0.0, 0.0], [12.3, 7.8]], [1.0, 2.0, 3.0], height=64, width=64, n_max=5)
    sky = fc.sky(wcs, origin=origin)
    assert len(sky) == 3
    assert sky[0].separation(wcs.pixel_to_world(100, 80)).arcsec < 1e-6   # frame (80, 100) = crval
    np.testing.assert_allclose([sky[0].ra.deg, sky[0].dec.deg], [229.64, 2.08], atol=1e-12)
    back = FullCatalog.from_sky(sky, fc.fluxes[:3], wcs, 64, 64, BANDS, origin=origin, max_sources=5)
    np.testing.assert_allclose(back.plocs, fc.plocs, atol=1e-8)
    np.testing.assert_array_equal(back.fluxes, fc.fluxes)
    moved = FullCatalog.from_sky(sky, fc.fluxes[:3], wcs, 64, 64, BANDS, origin=(0, 0))
    np.testing.assert_allclose(moved.plocs, fc.plocs[:3] + origin, atol=1e-8)


# ---------------------------------------------------------------- validation


def _good():
    tc = TileCatalog(np.array([[2, 0]], np.int32), np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)), 4, BANDS)
    tc.locs[0, 0, :] = [[0.5, 0.5], [0.1, 0.9]]
    tc.fluxes[0, 0, :] = [[9.0, 1.0], [3.0, 1.0]]
    return tc.validate()


def _set(name, index, value):
    def bad(tc):
        getattr(tc, name)[index] = value
        return tc
    return bad


def _replace(name, value):
    fields = ("n_sources", "locs", "fluxes", "tile_size", "bands")
    return lambda tc: TileCatalog(**{**{k: getattr(tc, k) for k in fields}, name: value})


@pytest.mark.parametrize("spoil, message", [
    (_set("n_sources", (0, 1), -1), r"n_sources must be in \[0, 2\]; 1 entries"),
    (_set("n_sources", (0, 1), 3), r"n_sources must be in \[0, 2\].*max 3"),
    (_set("locs", (0, 0, 1, 0), 1.5), r"1 valid sources have locs outside \[0, 1\]"),
    (_set("locs", (0, 0, 1, 0), -0.1), r"outside \[0, 1\]"),
    (_set("locs", (0, 0, 1, 0), np.nan), "locs has 1 non-finite"),
    (_set("fluxes", (0, 0, 0, 1), np.inf), "fluxes has 1 non-finite"),
    (_set("fluxes", (0, 0, 1, 1), -2.0), "1 valid sources have a negative flux"),
    (_set("fluxes", (0, 1, 0, 0), 1.0), r"1 invalid slots \(index >= n_sources\) hold non-zero fluxes"),
    (_set("locs", (0, 1, 1, 1), 0.5), "invalid slots .* non-zero locs"),
    (_set("fluxes", (0, 0, 1, 0), 10.0), "1 tiles are not sorted brightest first in band 'r'"),
    (_replace("locs", np.zeros((1, 2, 3, 2))), r"fluxes has shape \(1, 2, 2, 2\); it must be \(1, 2, 3\)"),
    (_replace("locs", np.zeros((1, 2, 2, 3))), r"locs has shape \(1, 2, 2, 3\)"),
    (_replace("fluxes", np.zeros((1, 2, 2, 3))), "fluxes has 3 bands but the catalog names 2"),
    (_replace("n_sources", np.array([[2.0, 0.0]])), "n_sources must be an integer array"),
    (_replace("tile_size", 0), "tile_size must be a positive"),
])
def test_tile_validate_catches(spoil, message):
    with pytest.raises(CatalogError, match=message):
        spoil(_good()).validate()


def test_full_validate_catches():
    fc = one_image([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], n_max=3)
    fc.fluxes[1, 0] = -1.0
    with pytest.raises(CatalogError, match="negative flux"):
        fc.validate()
    fc = one_image([[1.0, 2.0]], [1.0], n_max=3)
    fc.plocs[2, 0] = 0.5
    with pytest.raises(CatalogError, match="invalid slots .* plocs"):
        fc.validate()
    with pytest.raises(CatalogError, match=r"plocs has shape \(3, 3\)"):
        FullCatalog(fc.n_sources, np.zeros((3, 3)), fc.fluxes, 16, 20, BANDS).validate()
    with pytest.raises(CatalogError, match="do not fit max_sources=1"):
        one_image([[1.0, 2.0], [3.0, 4.0]], [1.0, 2.0], n_max=1)


# ---------------------------------------------------------------- units


def test_units_known_values_and_round_trips():
    assert units.nmgy_to_mag(1.0) == 22.5
    assert units.flux_to_mag(1000.0, units.SDSS_M2_NELEC_PER_NMGY_R) == pytest.approx(22.33, abs=0.01)
    mags = np.array([14.0, 18.5, 22.5, 24.0])
    np.testing.assert_allclose(units.nmgy_to_mag(units.mag_to_nmgy(mags)), mags, rtol=1e-12)
    flux = units.mag_to_flux(mags, 856.098)
    np.testing.assert_allclose(units.flux_to_mag(flux, 856.098), mags, rtol=1e-12)
    np.testing.assert_allclose(units.nmgy_to_flux(units.flux_to_nmgy(flux, 856.098), 856.098), flux)
    out = units.flux_to_mag(jnp.asarray(flux, jnp.float32), 856.098)
    assert isinstance(out, jax.Array)
    np.testing.assert_allclose(out, mags, atol=1e-4)


def test_units_nonpositive_policy():
    with pytest.raises(ValueError, match="2 of 3 values are <= 0"):
        units.nmgy_to_mag(np.array([1.0, 0.0, -1.0]))
    mags = units.nmgy_to_mag(np.array([1.0, 0.0, -1.0]), nonpositive="nan")
    assert mags[0] == 22.5 and np.isnan(mags[1:]).all()
    with pytest.raises(ValueError, match="under jax.jit; pass nonpositive='nan'"):
        jax.jit(units.nmgy_to_mag)(jnp.ones(2))
    traced = jax.jit(lambda x: units.flux_to_mag(x, 100.0, nonpositive="nan"))(jnp.array([100.0, 0.0]))
    assert traced[0] == 22.5 and jnp.isnan(traced[1])
    with pytest.raises(ValueError, match="nelec_per_nmgy must be positive"):
        units.flux_to_nmgy(1.0, 0.0)
