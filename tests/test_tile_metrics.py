"""Catalog scoring (starmodels.tiles.metrics): hand-made catalogs with exact expected counts, bad
inputs, and the real M2 Hubble truth file (``$STARMODELS_SDSS_DATA``, default ``/work/shared/data/sdss``)."""

import json
import time

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from starmodels.tiles.metrics import (
    M2,
    default_m2_truth_path,
    flux_to_mag,
    interval_coverage,
    load_m2_truth,
    m2_scoring_sets,
    m2_truth_pixels,
    match_hungarian,
    match_starnet,
    robust_sd,
    score,
    select_region,
)

TRUTH = default_m2_truth_path()
needs_truth = pytest.mark.skipif(not TRUTH.is_file(), reason=f"M2 truth file not found at {TRUTH}")


def cat(*rows):
    """(pos, mag) from rows of (row, col, mag)."""
    a = np.array(rows, float).reshape(-1, 3)
    return a[:, :2], a[:, 2]


def both(est, truth, **kw):
    return match_starnet(*est, *truth, **kw), match_hungarian(*est, *truth, **kw)


# --- the StarNet rule, crafted cases -------------------------------------------------------------

def test_exact_and_linf_box():
    truth = cat((10, 10, 20), (30, 30, 20), (50, 50, 20))
    # exact; L-inf 0.45 (Euclidean 0.64 > 0.5, still a hit); 0.55 in one axis (miss)
    est = cat((10, 10, 20), (30.45, 30.45, 20), (50.55, 50, 20))
    for m in both(est, truth):
        assert m.est_tp.tolist() == [True, True, False]
        assert m.true_tp.tolist() == [True, True, False]


def test_tolerances_are_strict():
    truth = cat((10, 10, 20), (30, 30, 20))
    est = cat((10.5, 10, 20), (30, 30, 20.5))  # exactly 0.5 px, exactly 0.5 mag: not within
    for m in both(est, truth):
        assert not m.est_tp.any() and not m.true_tp.any()
    m = match_starnet(*est, *truth, pos_tol=0.51, mag_tol=0.51)
    assert m.est_tp.all() and m.true_tp.all()


def test_magnitude_tolerance():
    truth = cat((10, 10, 20))
    est = cat((10, 10, 20.6), (10.1, 10, 19.4))
    s = score(est, truth)
    assert (s.tp_est, s.tp_true, s.n_est, s.n_true) == (0, 0, 2, 1)
    assert s.precision == 0 and s.recall == 0 and s.f1 == 0


def test_two_estimates_near_one_star_starnet_counts_both():
    truth = cat((10, 10, 20), (40, 40, 21))
    est = cat((10.1, 10, 20), (9.8, 10.2, 20.2))  # both near the first star; the second star missed
    s = score(est, truth, rule="starnet")
    assert (s.tp_est, s.tp_true) == (2, 1)
    assert s.precision == 1.0 and s.recall == 0.5
    assert s.f1 == pytest.approx(2 / 3)
    assert s.n_pairs == 2  # each TP estimate paired with its nearest allowed truth
    h = score(est, truth, rule="hungarian")
    assert (h.tp_est, h.tp_true) == (1, 1)
    assert h.precision == 0.5 and h.recall == 0.5
    assert h.n_pairs == 1
    m = match_hungarian(*est, *truth)
    assert m.pairs.tolist() == [[0, 0]]  # the closer estimate


def test_one_estimate_near_two_stars_starnet_recovers_both():
    truth = cat((10, 10, 20), (10.6, 10, 20.3))
    est = cat((10.3, 10, 20.1))
    s = score(est, truth)
    assert (s.tp_est, s.tp_true, s.recall, s.precision) == (1, 2, 1.0, 1.0)
    h = score(est, truth, rule="hungarian")
    assert (h.tp_est, h.tp_true, h.recall) == (1, 1, 0.5)


def test_starnet_pairs_use_nearest_allowed_truth():
    truth = cat((10, 10, 20), (10.3, 10, 25), (10.4, 10, 20))  # (10.3) is nearest but 5 mag off
    est = cat((10.25, 10, 20))
    m = match_starnet(*est, *truth)
    assert m.pairs.tolist() == [[0, 2]]
    assert m.true_tp.tolist() == [True, False, True]


# --- Hungarian ----------------------------------------------------------------------------------

def test_hungarian_maximises_pairs_where_greedy_fails():
    # nearest-first greedy takes E0-T0 (0.35) and leaves E1 unmatched; two pairs are possible
    truth = cat((10.0, 5, 20), (10.8, 5, 20))
    est = cat((10.35, 5, 20), (9.6, 5, 20))
    m = match_hungarian(*est, *truth)
    assert m.pairs.tolist() == [[0, 1], [1, 0]]
    assert m.est_tp.all() and m.true_tp.all()


def test_hungarian_minimises_total_distance():
    truth = cat((10, 10.0, 20), (10, 10.6, 20))
    est = cat((10, 10.4, 20), (10, 10.2, 20))
    m = match_hungarian(*est, *truth)
    assert m.pairs.tolist() == [[0, 1], [1, 0]]
    s = score(est, truth, rule="hungarian")
    assert s.dist_median == pytest.approx(0.2)  # the other assignment has distances 0.4 and 0.4


def test_random_catalogs_agree_with_dense_reference():
    rng = np.random.default_rng(1)
    n_e, n_t = 300, 250
    ep, tp = rng.uniform(0, 20, (n_e, 2)), rng.uniform(0, 20, (n_t, 2))
    em, tm = rng.uniform(18, 22, n_e), rng.uniform(18, 22, n_t)
    ok = ((np.abs(ep[:, None, :] - tp[None, :, :]).max(-1) < 0.5)
          & (np.abs(em[:, None] - tm[None, :]) < 0.5))
    m = match_starnet(ep, em, tp, tm)
    np.testing.assert_array_equal(m.est_tp, ok.any(1))
    np.testing.assert_array_equal(m.true_tp, ok.any(0))
    assert ok.any(1).sum() > 20  # the case is not trivial
    h = match_hungarian(ep, em, tp, tm)
    best = maximum_bipartite_matching(csr_matrix(ok), perm_type="column")
    assert len(h.pairs) == int((best >= 0).sum())
    assert ok[h.pairs[:, 0], h.pairs[:, 1]].all()
    assert len(np.unique(h.pairs[:, 0])) == len(np.unique(h.pairs[:, 1])) == len(h.pairs)


def test_large_catalogs_are_quick():
    rng = np.random.default_rng(2)
    ep, tp = rng.uniform(0, 106, (1000, 2)), rng.uniform(0, 106, (1000, 2))
    em, tm = rng.uniform(15, 22.3, 1000), rng.uniform(15, 22.3, 1000)
    t0 = time.perf_counter()
    for rule in ("starnet", "hungarian"):
        score((ep, em), (tp, tm), rule=rule)
    # everything within tolerance of everything: one 1000 x 1000 assignment
    ep, tp = rng.uniform(0, 0.4, (1000, 2)), rng.uniform(0, 0.4, (1000, 2))
    m = match_hungarian(ep, np.full(1000, 20.0), tp, np.full(1000, 20.0))
    assert len(m.pairs) == 1000
    assert time.perf_counter() - t0 < 10.0


# --- Scores ---------------------------------------------------------------------------------------

def test_bins_and_outputs():
    truth = cat((10, 10, 15.2), (20, 20, 16.7), (30, 30, 22.33), (40, 40, 22.0))
    est = cat((10, 10, 15.3), (30, 30, 22.33), (60, 60, 16.5))
    s = score(est, truth)
    assert s.mag_edges == (15, 16, 17, 18, 19, 20, 21, 22, 22.33)
    assert s.bin_n_true == (1, 1, 0, 0, 0, 0, 0, 2)  # last bin closed: 22.33 counted
    assert s.bin_tp_true == (1, 0, 0, 0, 0, 0, 0, 1)
    assert s.bin_recall[:2] == (1.0, 0.0) and np.isnan(s.bin_recall[2]) and s.bin_recall[-1] == 0.5
    assert s.bin_n_est == (1, 1, 0, 0, 0, 0, 0, 1)
    assert s.bin_precision[0] == 1.0 and s.bin_precision[1] == 0.0 and s.bin_precision[-1] == 1.0
    assert s.dmag_median == pytest.approx(0.05)
    d = s.to_dict()
    json.dumps(d)
    assert d["tp_est"] == 2 and d["mag_edges"][-1] == 22.33
    t = s.table()
    assert len(t) == 8 and t.colnames == ["mag_lo", "mag_hi", "n_true", "tp_true", "recall", "n_est",
                                          "tp_est", "precision"]
    assert t.meta["recall"] == 0.5 and t.meta["rule"] == "starnet"
    assert "recall 0.500" in str(s)
    custom = score(est, truth, mag_edges=[15, 20, 23])
    assert custom.bin_n_true == (2, 2) and custom.bin_n_est == (2, 1)


def test_table_like_inputs():
    est = {"row": [10.0, 20.0], "col": [10.0, 20.0], "mag": [20.0, 20.0]}
    truth = {"pos": np.array([[10.0, 10.2]]), "mag": [20.1]}
    s = score(est, truth)
    assert (s.tp_est, s.tp_true, s.n_est, s.n_true) == (1, 1, 2, 1)
    from astropy.table import Table

    assert score(Table(est), truth).tp_est == 1


def test_empty_catalogs():
    truth = cat((10, 10, 20))
    none = (np.zeros((0, 2)), np.zeros(0))
    s = score(none, truth)
    assert (s.n_est, s.tp_true, s.recall) == (0, 0, 0.0)
    assert np.isnan(s.precision) and np.isnan(s.f1) and s.n_pairs == 0 and np.isnan(s.dist_median)
    h = score(truth, none, rule="hungarian")
    assert h.precision == 0.0 and np.isnan(h.recall)


# --- bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [match_starnet, match_hungarian])
def test_bad_inputs_name_the_argument(fn):
    p, m = cat((10, 10, 20), (20, 20, 21))
    with pytest.raises(ValueError, match="est_mag"):
        fn(p, m[:1], p, m)
    with pytest.raises(ValueError, match=r"est_pos must have shape \(N, 2\)"):
        fn(p[:, 0], m, p, m)
    bad = p.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="true_pos has 1 rows with NaN"):
        fn(p, m, bad, m)
    with pytest.raises(ValueError, match="true_mag"):
        fn(p, m, p, np.array([20.0, np.nan]))
    with pytest.raises(ValueError, match="pos_tol"):
        fn(p, m, p, m, pos_tol=-1)


def test_score_bad_options():
    c = cat((10, 10, 20))
    with pytest.raises(ValueError, match="rule"):
        score(c, c, rule="nearest")
    with pytest.raises(ValueError, match="mag_edges"):
        score(c, c, mag_edges=[20, 19])
    with pytest.raises(ValueError, match="'mag'"):
        score({"row": [1.0], "col": [1.0]}, c)
    with pytest.raises(ValueError, match="truth_pos"):
        score(c, (np.array([[np.inf, 1.0]]), np.array([20.0])))


# --- helpers ------------------------------------------------------------------------------------------

def test_select_region_is_strict():
    pos = np.array([[8.0, 50], [8.01, 50], [97.99, 50], [98.0, 50], [50, 8.0], [50, 50]])
    assert select_region(pos, 8, 106).tolist() == [False, True, True, False, False, True]


def test_conventions():
    assert flux_to_mag(np.array([856.098]))[0] == pytest.approx(22.5)
    assert flux_to_mag(1000.0) == pytest.approx(22.3313, abs=1e-4)
    with pytest.raises(ValueError, match="flux_e"):
        flux_to_mag([100.0, -1.0])
    np.testing.assert_allclose(m2_truth_pixels([[0.0, 0.0], [1.0, 0.5]]), [[2.5, 2.5], [102.5, 52.5]])
    assert robust_sd([1.0, 2.0, 3.0]) == pytest.approx(1.4826) and np.isnan(robust_sd([]))


def test_interval_coverage():
    truth = np.array([0.0, 1.0, 2.0, 3.0])
    assert interval_coverage(truth - 0.1, truth + 0.1, truth) == 1.0
    assert interval_coverage(np.zeros(4), np.full(4, 1.0), truth) == 0.5  # closed: 0 and 1 covered
    assert interval_coverage(0.0, 2.5, truth) == 0.75  # broadcasting
    with pytest.raises(ValueError, match="truth has 1 non-finite"):
        interval_coverage(0.0, 1.0, [0.5, np.nan])
    with pytest.raises(ValueError, match="lo > hi"):
        interval_coverage([1.0], [0.0], [0.5])
    with pytest.raises(ValueError, match="one shape"):
        interval_coverage(np.zeros(3), np.ones(2), np.zeros(3))


# --- the real M2 truth file --------------------------------------------------------------------------

@needs_truth
def test_m2_truth_scored_against_itself():
    t = load_m2_truth()
    assert len(t.pos) == M2.n_truth
    assert t.mag.max() < 22.34 and t.flux_e.min() >= M2.flux_min_e
    s = m2_scoring_sets(t.pos, t.flux_e, t)
    assert len(s.true_pos) == M2.n_scored_truth == 931
    assert len(s.est_pos) == 931 and s.n_est_faint == 0
    for rule in ("starnet", "hungarian"):
        sc = score(s.est, s.truth, rule=rule)
        assert (sc.f1, sc.tp_true, sc.tp_est, sc.n_true) == (1.0, 931, 931, 931)


@needs_truth
def test_m2_protocol_drops_faint_and_border_detections():
    t = load_m2_truth()
    extra_pos = np.array([[50.2, 50.7], [3.0, 50.0], [50.3, 60.1]])
    extra_flux = np.array([999.0, 5e4, 5e4])  # faint in the region; bright at the border; bright inside
    s = m2_scoring_sets(np.r_[t.pos, extra_pos], np.r_[t.flux_e, extra_flux], t)
    assert s.n_est_faint == 1
    assert s.est_kept[-3:].tolist() == [False, False, True]
    sc = score(s.est, s.truth)
    assert (sc.n_est, sc.tp_est, sc.n_true, sc.tp_true) == (932, 931, 931, 931)
