"""Pixel masks: DQ bits, non-finite values, pixel and sky regions, hold-out splits, combining."""

import starmodels  # noqa: F401, I001  (first: configures JAX)

import math

import numpy as np
import pytest
from astropy.wcs import WCS

from starmodels.sky.masks import (
    PixelBox,
    PixelCircle,
    SkyBox,
    SkyCircle,
    combine,
    holdout_split,
    mask_from_dq,
    mask_from_nans,
    region_mask,
)

SHAPE = (30, 40)
SCALE = 0.2  # arcsec per pixel


def tan_wcs(rot=0.0, crval=(150.1, 2.2)):
    """A TAN WCS of SCALE arcsec/px centred on the grid, pixel axes rotated by ``rot`` radians."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    w.wcs.crpix = [(SHAPE[1] + 1) / 2, (SHAPE[0] + 1) / 2]
    d, c, s = SCALE / 3600.0, math.cos(rot), math.sin(rot)
    w.wcs.cd = [[-d * c, d * s], [d * s, d * c]]
    return w


# -- DQ and NaN ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32, np.int16, np.int64])
def test_mask_from_dq_bitmask_and_bit_numbers_agree(dtype):
    dq = np.array([[0, 1, 2, 3], [4, 5, 8, 16]], dtype=dtype)
    want = np.array([[True, False, True, False], [False, False, True, True]])
    np.testing.assert_array_equal(mask_from_dq(dq, 0b101), want)
    np.testing.assert_array_equal(mask_from_dq(dq, [0, 2]), want)
    np.testing.assert_array_equal(mask_from_dq(dq, (2, 0)), want)
    assert mask_from_dq(dq, []).all() and mask_from_dq(dq, 0).all()
    assert mask_from_dq(dq, np.uint16(8)).tolist() == [[True] * 4, [True, True, False, True]]


def test_mask_from_dq_high_bits_and_signed_flags():
    dq = np.array([1 << 31, 1 << 30, 0], dtype=np.uint32)
    assert mask_from_dq(dq, [31]).tolist() == [False, True, True]
    signed = np.array([-(1 << 31), 1 << 30, 0], dtype=np.int32)  # bit 31 set, as stored in two's complement
    assert mask_from_dq(signed, [31]).tolist() == [False, True, True]
    assert mask_from_dq(np.array([1, 2]), 1 << 63).all()


@pytest.mark.parametrize("dq, bits, message", [
    (np.zeros((3, 3), float), 1, "DQ must be an integer array.*float64.*astype"),
    (np.zeros((3, 3), bool), 1, "DQ must be an integer array.*bool"),
    (np.zeros((3, 3), np.uint16), -1, "bitmask must be between 0 and 2\\*\\*64 - 1"),
    (np.zeros((3, 3), np.uint16), [64], "bit numbers must be integers from 0 to 63"),
    (np.zeros((3, 3), np.uint16), [1.0, True], "bit numbers must be integers"),
    (np.zeros((3, 3), np.uint16), "DO_NOT_USE", "int bitmask or a list of bit numbers"),
    (np.uint16(3), 1, "got a single number"),
])
def test_mask_from_dq_errors(dq, bits, message):
    with pytest.raises(ValueError, match=message):
        mask_from_dq(dq, bits)


def test_mask_from_nans():
    a, b = np.ones((4, 5)), np.ones((4, 5), np.float32)
    a[1, 2], b[3, 0], b[0, 4] = np.nan, np.inf, -np.inf
    m = mask_from_nans(a, b)
    assert m.dtype == bool and m.sum() == 17
    assert not m[1, 2] and not m[3, 0] and not m[0, 4]
    assert mask_from_nans(np.arange(6).reshape(2, 3)).all()
    with pytest.raises(ValueError, match=r"array 2 has shape \(5, 4\) but array 1 has shape \(4, 5\)"):
        mask_from_nans(a, np.ones((5, 4)))
    with pytest.raises(ValueError, match="at least one array"):
        mask_from_nans()
    with pytest.raises(ValueError, match="array 1 must be numeric"):
        mask_from_nans(np.array([["a"]]))


# -- regions ------------------------------------------------------------------------------------------


def test_pixel_regions_exclude_or_keep_the_expected_pixels():
    rows, cols = np.indices(SHAPE)
    circle = PixelCircle(row=5, col=6, radius=2.5)
    inside = (rows - 5) ** 2 + (cols - 6) ** 2 <= 6.25
    assert inside.sum() == 21
    np.testing.assert_array_equal(region_mask(SHAPE, circle), ~inside)
    np.testing.assert_array_equal(region_mask(SHAPE, [circle], keep_inside=True), inside)
    box = PixelBox(row=20.0, col=30.5, half_rows=2, half_cols=3)  # cols 27.5..33.5: 28..33
    in_box = (np.abs(rows - 20) <= 2) & (cols >= 28) & (cols <= 33)
    assert in_box.sum() == 5 * 6
    np.testing.assert_array_equal(region_mask(SHAPE, [circle, box]), ~inside & ~in_box)
    # partly and wholly off the image
    edge = region_mask(SHAPE, PixelCircle(0, 0, 1.0), keep_inside=True)
    assert edge.sum() == 3 and edge[0, 0] and edge[0, 1] and edge[1, 0]
    assert region_mask(SHAPE, [PixelCircle(-50, 0, 3.0), PixelBox(0, 100, 2, 2)]).all()
    assert region_mask(SHAPE, []).all()


@pytest.mark.parametrize("rot", [0.0, 0.6])
def test_sky_circle_masks_the_pixels_around_its_wcs_position(rot):
    wcs = tan_wcs(rot)
    row, col = 7.0, 31.0  # far from the reference pixel: tests the projection, not just the centre
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(col, row))
    got = region_mask(SHAPE, SkyCircle(ra, dec, radius=2.5 * SCALE), wcs)
    want = region_mask(SHAPE, PixelCircle(row, col, 2.5))
    np.testing.assert_array_equal(got, want)
    assert (~got).sum() == 21
    # a sky circle partly off the image, and one far away
    ra0, dec0 = (float(v) for v in wcs.pixel_to_world_values(-1.0, 15.0))
    np.testing.assert_array_equal(region_mask(SHAPE, SkyCircle(ra0, dec0, 3.5 * SCALE), wcs),
                                  region_mask(SHAPE, PixelCircle(15.0, -1.0, 3.5)))
    assert region_mask(SHAPE, SkyCircle(ra + 1.0, dec, 10.0), wcs).all()


def test_sky_box_is_aligned_with_ra_dec():
    wcs = tan_wcs()
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(10.0, 12.0))  # (x, y) = (col, row)
    box = SkyBox(ra, dec, half_ra=3.4 * SCALE, half_dec=1.6 * SCALE)
    got = region_mask(SHAPE, box, wcs, keep_inside=True)
    np.testing.assert_array_equal(got, region_mask(SHAPE, PixelBox(12, 10, 1.6, 3.4), keep_inside=True))
    assert got.sum() == 3 * 7


def test_sky_regions_across_ra_zero_and_with_a_cube_wcs():
    wcs = tan_wcs(crval=(0.0005, -30.0))
    ra, dec = (float(v) for v in wcs.pixel_to_world_values(35.0, 20.0))
    ra %= 360
    assert ra > 359.99  # the region's centre is just below RA = 360 and the image spans RA = 0
    np.testing.assert_array_equal(region_mask(SHAPE, SkyCircle(ra, dec, 4.5 * SCALE), wcs),
                                  region_mask(SHAPE, PixelCircle(20.0, 35.0, 4.5)))
    cube = WCS(naxis=3)
    cube.wcs.ctype = ["RA---TAN", "DEC--TAN", "WAVE"]
    cube.wcs.crval = [*tan_wcs().wcs.crval, 1e-6]
    cube.wcs.crpix = [*tan_wcs().wcs.crpix, 1]
    cube.wcs.cdelt = [-SCALE / 3600.0, SCALE / 3600.0, 1e-9]
    ra, dec = (float(v) for v in tan_wcs().pixel_to_world_values(5.0, 5.0))
    assert (~region_mask(SHAPE, SkyCircle(ra, dec, 1.5 * SCALE), cube)).sum() == 9


@pytest.mark.parametrize("call, message", [
    (lambda: region_mask(SHAPE, SkyCircle(150.1, 2.2, 1.0)), "regions are on the sky: region_mask needs"),
    (lambda: region_mask(SHAPE, [PixelBox(15, 20, 20, 30)]), "the mask hides every pixel"),
    (lambda: region_mask(SHAPE, [PixelBox(-9, -9, 1, 1)], keep_inside=True), "the mask hides every pixel"),
    (lambda: region_mask(SHAPE, [(3, 4, 2.0)]), "regions must be PixelCircle"),
    (lambda: region_mask((30,), []), "2-D shape"),
    (lambda: region_mask(SHAPE, SkyCircle(1, 2, 1.0), wcs="header"), "astropy.wcs.WCS"),
    (lambda: PixelCircle(1, 2, 0), "radius must be positive"),
    (lambda: PixelBox(1, np.nan, 1, 1), "col must be finite"),
    (lambda: SkyCircle(10.0, 95.0, 1.0), "dec must be within"),
    (lambda: SkyBox(10.0, 5.0, -1.0, 1.0), "half_ra must be positive"),
])
def test_region_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- hold-out and combine ---------------------------------------------------------------------------


def _use():
    use = np.ones((60, 50), bool)
    use[10:20, 5:45] = False  # a masked band
    use[::7, ::3] = False
    return use


@pytest.mark.parametrize("block", [1, 4])
def test_holdout_split_is_disjoint_complete_and_reproducible(block):
    use = _use()
    n = int(use.sum())
    fit, held = holdout_split(use, 0.2, seed=42, block=block)
    assert fit.dtype == bool and held.dtype == bool
    assert not (fit & held).any()
    np.testing.assert_array_equal(fit | held, use)
    # exact for single pixels; within half a block (16 pixels) of the target for blocks
    tolerance = 0 if block == 1 else block * block / 2
    assert abs(held.sum() - 0.2 * n) <= tolerance + 0.5
    again = holdout_split(use, 0.2, seed=42, block=block)
    np.testing.assert_array_equal(again.held, held)
    assert not np.array_equal(holdout_split(use, 0.2, seed=43, block=block).held, held)
    via_generator = holdout_split(use, 0.2, seed=np.random.default_rng(42), block=block)
    np.testing.assert_array_equal(via_generator.held, held)


def test_block_holdout_holds_out_whole_blocks():
    use = _use()
    k = 4
    fit, held = holdout_split(use, 0.3, seed=1, block=k)
    ids = (np.arange(60)[:, None] // k) * 1000 + np.arange(50)[None, :] // k
    held_blocks = set(ids[held].tolist())
    fit_blocks = set(ids[fit].tolist())
    assert not held_blocks & fit_blocks  # a block is held out whole (all its used pixels) or not at all

    def next_to_fit(h):  # share of held-out pixels with a fitted 4-neighbour
        f = np.pad(use & ~h, 1)
        near = f[:-2, 1:-1] | f[2:, 1:-1] | f[1:-1, :-2] | f[1:-1, 2:]
        return (near & h).sum() / h.sum()

    pixelwise = holdout_split(use, 0.3, seed=1).held
    assert next_to_fit(held) < 0.7 < 0.9 < next_to_fit(pixelwise)


@pytest.mark.parametrize("args, message", [
    ((np.ones((5, 5)), 0.2, 0), "mask 1 must be boolean"),
    ((np.ones((5, 5), bool), 0.0, 0), "fraction must be a number strictly between 0 and 1"),
    ((np.ones((5, 5), bool), 1.0, 0), "strictly between 0 and 1"),
    ((np.ones((5, 5), bool), 0.01, 0), "holds out 0 pixel"),
    ((np.ones((5, 5), bool), 0.2, True), "seed must be an int"),
    ((np.ones((5, 5), bool), 0.2, "x"), "seed must be an int"),
    ((np.zeros((5, 5), bool), 0.2, 0), "the mask hides every pixel"),
    ((np.ones((5, 5), bool), 0.2, 0, 0), "block must be a positive integer"),
    ((np.ones((5, 5), bool), 0.2, 0, 8), "at least 2 blocks"),
])
def test_holdout_errors(args, message):
    with pytest.raises(ValueError, match=message):
        holdout_split(*args)


def test_combine():
    a = np.ones((3, 4), bool)
    b = a.copy()
    a[0, 0], b[2, 3] = False, False
    got = combine(a, None, b)
    assert got.sum() == 10 and not got[0, 0] and not got[2, 3]
    assert got is not a and a.sum() == 11  # inputs are not modified
    with pytest.raises(ValueError, match=r"mask 2 has shape \(4, 3\) but mask 1 has shape \(3, 4\)"):
        combine(a, np.ones((4, 3), bool))
    with pytest.raises(ValueError, match="mask 2 must be boolean"):
        combine(a, np.ones((3, 4)))
    with pytest.raises(ValueError, match="the mask hides every pixel"):
        combine(a, ~a)
    with pytest.raises(ValueError, match="at least one mask"):
        combine(None)
