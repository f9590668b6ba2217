"""Catalog scoring for crowded-field inference: matching, precision / recall / F1, the M2 protocol.

Inputs are plain numpy arrays. Positions are ``(N, 2)`` arrays of 0-based pixel ``(row, col)`` with
pixel centres at integers (the numpy / astropy convention); brightness is in magnitudes (convert
fluxes in electrons with :func:`flux_to_mag`).

Two matching rules:

* :func:`match_starnet` -- the rule of StarNet (Liu, McAuliffe & Regier, JMLR 2023) and of the published
  M2 numbers: an estimate is a true positive when *some* truth source lies within ``pos_tol`` pixels in
  both axes (L-infinity) and within ``mag_tol`` magnitudes; recall counts the truth sources that have
  such an estimate. It is not one-to-one: two estimates near one truth star are both true positives.
  "Within" is strict (``<``), as in StarNet's code.
* :func:`match_hungarian` -- one-to-one: among the pairs the same tolerances allow, the largest set of
  disjoint pairs, and among those the one of least total Euclidean distance
  (:func:`scipy.optimize.linear_sum_assignment`).

:func:`score` gives both as a :class:`Scores` (overall and per magnitude bin, with the position and
magnitude errors of the matched pairs). :data:`M2` holds the conventions of the Hubble truth file of
the SDSS M2 field and :func:`m2_scoring_sets` applies the published protocol to an estimated catalog.
:func:`interval_coverage` is a calibration check of posterior intervals.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

__all__ = [
    "M2",
    "M2Convention",
    "M2ScoringSets",
    "M2Truth",
    "Match",
    "Scores",
    "default_m2_truth_path",
    "flux_to_mag",
    "interval_coverage",
    "load_m2_truth",
    "m2_scoring_sets",
    "m2_truth_pixels",
    "match_hungarian",
    "match_starnet",
    "robust_sd",
    "score",
    "select_region",
]

# --------------------------------------------------------------------------------------------------
# The M2 conventions (one place)


@dataclass(frozen=True)
class M2Convention:
    """Conventions of the SDSS M2 benchmark and its Hubble truth file, from the data README.

    Source: ``/work/shared/data/sdss/README.md`` ("Truth positions: the convention" and "How the
    published numbers were scored"), for ``truth/true_hubble_m2.npz`` (prob-ml/bliss commit 41cffcd6).

    * ``true_locs`` are not fractions of the 106-pixel cutout. In 0-based pixels of the 106 x 106
      ``sdss_image`` with pixel centres at integers: ``row = loc_scale * true_locs[:, 0] + loc_offset``,
      ``col = loc_scale * true_locs[:, 1] + loc_offset`` (100 and 2.5: the locations were defined on
      the 100 x 100 interior, which starts 3 pixels in, with pixel corners at integers). In the full
      ``frame-r`` image add ``frame_origin`` (627, 307): ``frame_row = 629.5 + 100 * true_locs[:, 0]``.
      A least-squares fit of bright isolated stars gives scale 100.005 and offset 2.56 px.
    * Magnitudes: ``mag = mag_zero - 2.5 log10(flux_e / nelec_per_nmgy)`` = ``22.5 - 2.5 log10(flux_e /
      856.098)`` (the file stores ``nelec_per_nmgy`` = 856.09845; the README's 856.098 is used here, a
      difference of 6e-7 mag).
    * Scoring: truth and detections are kept when ``border < row < cutout_size - border`` and the same
      for col (8 < row < 98; 931 of the 1114 Hubble stars); the truth holds only stars brighter than
      ``flux_min_e`` = 1000 electrons in r (r < 22.33), so detections fainter than that are dropped
      before scoring (neither hits nor false positives); a hit is within ``pos_tol`` = 0.5 px in both
      axes and ``mag_tol`` = 0.5 mag (:func:`match_starnet`).
    """

    loc_scale: float = 100.0  # pixels per unit of true_locs
    loc_offset: float = 2.5  # pixels: cutout pixel of true_locs == 0
    cutout_size: int = 106  # pixels on a side of sdss_image
    frame_origin: tuple[int, int] = (627, 307)  # (row, col) of sdss_image[0, 0] in frame-r-002583-2-0136
    border: float = 8.0  # pixels: scored region is border < row, col < cutout_size - border
    flux_min_e: float = 1000.0  # electrons (r band): faint limit of the truth and of scored detections
    nelec_per_nmgy: float = 856.098  # electrons per nanomaggy (r band)
    mag_zero: float = 22.5  # magnitude of 1 nanomaggy
    pos_tol: float = 0.5  # pixels (L-infinity)
    mag_tol: float = 0.5  # magnitudes
    n_truth: int = 1114  # Hubble stars in the file
    n_scored_truth: int = 931  # Hubble stars inside the scored region


M2 = M2Convention()
"""The M2 benchmark conventions (see :class:`M2Convention`)."""


def flux_to_mag(flux_e, nelec_per_nmgy: float = M2.nelec_per_nmgy,
                mag_zero: float = M2.mag_zero) -> np.ndarray:
    """Magnitudes of fluxes: ``mag_zero - 2.5 log10(flux_e / nelec_per_nmgy)``.

    ``flux_e``: fluxes in electrons (array, all > 0); ``nelec_per_nmgy``: electrons per nanomaggy
    (default the M2 r band, 856.098); ``mag_zero``: magnitude of one nanomaggy (22.5). Returns float64
    magnitudes of the same shape. Non-positive or non-finite fluxes raise ``ValueError``.
    """
    from starmodels.tiles import units

    f = np.asarray(flux_e, dtype=float)
    bad = ~np.isfinite(f) | (f <= 0)
    if bad.any():
        raise ValueError(f"flux_e must be finite and > 0 to convert to magnitudes; {int(bad.sum())} of "
                         f"{f.size} values are not (first at index {int(np.flatnonzero(bad.ravel())[0])})")
    return units.flux_to_mag(f, nelec_per_nmgy) + (mag_zero - units.NMGY_ZERO_POINT)


def m2_truth_pixels(true_locs, convention: M2Convention = M2) -> np.ndarray:
    """Cutout pixel positions ``(N, 2)`` (row, col; 0-based, centres at integers) of ``true_locs``.

    ``row = 100 * true_locs[:, 0] + 2.5``, ``col = 100 * true_locs[:, 1] + 2.5`` (:class:`M2Convention`).
    Add ``M2.frame_origin`` for pixels of the full SDSS frame.
    """
    locs = _positions(true_locs, "true_locs")
    return convention.loc_scale * locs + convention.loc_offset


def default_m2_truth_path() -> Path:
    """Path of the M2 truth file, ``truth/true_hubble_m2.npz`` in the shared SDSS data folder
    (:func:`starmodels.tiles.field.m2_data_dir`)."""
    from starmodels.tiles.field import _WORK_DATA, DATA_ENV, m2_data_dir

    try:
        root = m2_data_dir()
    except FileNotFoundError:      # no data here: a path that does not exist, for the caller to report
        root = Path(os.environ.get(DATA_ENV, _WORK_DATA))
    return root / "truth" / "true_hubble_m2.npz"


class M2Truth(NamedTuple):
    """The Hubble truth of the M2 field in cutout pixels (all stars of the file, no region cut)."""

    pos: np.ndarray  # (N, 2) row, col in 0-based pixels of the 106 x 106 cutout
    flux_e: np.ndarray  # (N,) electrons in the chosen band
    mag: np.ndarray  # (N,) magnitudes (flux_to_mag with M2.nelec_per_nmgy)
    image: np.ndarray  # (2, 106, 106) r and i cutouts in electrons, sky included


def load_m2_truth(path=None, band: int = 0, convention: M2Convention = M2) -> M2Truth:
    """Load the M2 Hubble truth file and convert it with the README convention.

    ``path``: the ``.npz`` (default :func:`default_m2_truth_path`); ``band``: column of ``true_fluxes``
    (0 = r, 1 = i; identical in this file). Returns :class:`M2Truth` (positions in cutout pixels,
    fluxes in electrons, magnitudes).
    """
    path = Path(path) if path is not None else default_m2_truth_path()
    with np.load(path) as t:
        locs, fluxes, image = t["true_locs"], t["true_fluxes"], t["sdss_image"]
    flux = np.asarray(fluxes[:, band], dtype=float)
    return M2Truth(m2_truth_pixels(locs, convention), flux, flux_to_mag(flux, convention.nelec_per_nmgy,
                                                                        convention.mag_zero), image)


def select_region(pos, border: float, size: float) -> np.ndarray:
    """Boolean mask of the sources with ``border < row < size - border`` and the same for col.

    ``pos``: ``(N, 2)`` row, col in pixels; ``border``, ``size`` in pixels. The M2 rule
    ``8 < row < 98`` is ``border=8, size=106``. Strict on both sides, as in the README and StarNet.
    """
    p = _positions(pos, "pos")
    return np.all((p > border) & (p < size - border), axis=1)


class M2ScoringSets(NamedTuple):
    """Estimated and truth catalogs after the M2 protocol's cuts, ready for :func:`score`."""

    est_pos: np.ndarray  # (n_est, 2) pixels of the 106 x 106 cutout
    est_mag: np.ndarray  # (n_est,) magnitudes
    true_pos: np.ndarray  # (n_true, 2)
    true_mag: np.ndarray  # (n_true,)
    est_kept: np.ndarray  # bool mask over the input estimates
    true_kept: np.ndarray  # bool mask over the truth file's stars
    n_est_faint: int  # estimates inside the region dropped for flux < M2.flux_min_e

    @property
    def est(self) -> tuple[np.ndarray, np.ndarray]:
        """``(est_pos, est_mag)``, the ``est`` argument of :func:`score`."""
        return self.est_pos, self.est_mag

    @property
    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        """``(true_pos, true_mag)``, the ``truth`` argument of :func:`score`."""
        return self.true_pos, self.true_mag


def m2_scoring_sets(est_pos, est_flux_e, truth=None, convention: M2Convention = M2) -> M2ScoringSets:
    """Apply the published M2 protocol to an estimated catalog.

    ``est_pos``: ``(N, 2)`` row, col in 0-based pixels of the 106 x 106 cutout (``sdss_image``, i.e.
    ``frame-r[627:733, 307:413]``); ``est_flux_e``: ``(N,)`` r-band fluxes in electrons. ``truth``: an
    :class:`M2Truth`, a path to the truth file, or None for :func:`default_m2_truth_path`.

    Truth: the Hubble stars with 8 < row < 98 and 8 < col < 98 (931 of 1114). Estimates: kept by the
    same rule and limited to flux >= 1000 electrons (fainter ones are neither hits nor false
    positives). Magnitudes by :func:`flux_to_mag`. Score with ``score(s.est, s.truth)``.
    """
    t = truth if isinstance(truth, M2Truth) else load_m2_truth(truth, convention=convention)
    pos = _positions(est_pos, "est_pos")
    flux = _vector(est_flux_e, "est_flux_e", len(pos))
    c = convention
    in_est = select_region(pos, c.border, c.cutout_size)
    bright = flux >= c.flux_min_e
    est_kept = in_est & bright
    true_kept = select_region(t.pos, c.border, c.cutout_size)
    return M2ScoringSets(pos[est_kept], flux_to_mag(flux[est_kept], c.nelec_per_nmgy, c.mag_zero),
                         t.pos[true_kept], t.mag[true_kept], est_kept, true_kept,
                         int((in_est & ~bright).sum()))


# --------------------------------------------------------------------------------------------------
# Matching


class Match(NamedTuple):
    """Result of a matching rule.

    ``est_tp``: bool ``(n_est,)``, the estimate is a true positive. ``true_tp``: bool ``(n_true,)``, the
    truth source is recovered. ``pairs``: int ``(K, 2)`` of (estimate index, truth index): for the
    StarNet rule every true-positive estimate with its nearest allowed truth source (Euclidean; ties
    by magnitude difference), so a truth index can repeat; for the Hungarian rule the one-to-one pairs.
    """

    est_tp: np.ndarray
    true_tp: np.ndarray
    pairs: np.ndarray


def match_starnet(est_pos, est_mag, true_pos, true_mag, pos_tol: float = 0.5, mag_tol: float = 0.5) -> Match:
    """StarNet matching: not one-to-one.

    An estimate is a true positive when some truth source lies within ``pos_tol`` pixels in both axes
    (L-infinity, strict) and within ``mag_tol`` magnitudes (strict); a truth source is recovered when
    some estimate does the same. Positions ``(N, 2)`` in pixels, magnitudes ``(N,)``. Candidate pairs
    come from a k-d tree (L-infinity), so large catalogs are cheap. Returns :class:`Match`.
    """
    ep, em, tp, tm = _check_inputs(est_pos, est_mag, true_pos, true_mag)
    i, j, d = _allowed_pairs(ep, em, tp, tm, _tol(pos_tol, "pos_tol"), _tol(mag_tol, "mag_tol"))
    est_tp = np.zeros(len(ep), bool)
    true_tp = np.zeros(len(tp), bool)
    est_tp[i] = True
    true_tp[j] = True
    if i.size:
        order = np.lexsort((np.abs(em[i] - tm[j]), d, i))
        i, j = i[order], j[order]
        first = np.unique(i, return_index=True)[1]
        pairs = np.column_stack([i[first], j[first]])
    else:
        pairs = np.zeros((0, 2), int)
    return Match(est_tp, true_tp, pairs)


def match_hungarian(est_pos, est_mag, true_pos, true_mag, pos_tol: float = 0.5,
                    mag_tol: float = 0.5) -> Match:
    """One-to-one matching among the pairs the StarNet tolerances allow.

    Allowed pairs: within ``pos_tol`` pixels in both axes (L-infinity, strict) and ``mag_tol``
    magnitudes (strict). Among them the matching with the most pairs, and among those the one of least
    total Euclidean position distance (pixels), by :func:`scipy.optimize.linear_sum_assignment` on each
    connected group of candidates; disallowed pairs get a cost larger than any allowed total and are
    rejected afterwards. Positions ``(N, 2)`` in pixels, magnitudes ``(N,)``. Returns :class:`Match`.
    """
    ep, em, tp, tm = _check_inputs(est_pos, est_mag, true_pos, true_mag)
    i, j, d = _allowed_pairs(ep, em, tp, tm, _tol(pos_tol, "pos_tol"), _tol(mag_tol, "mag_tol"))
    n_e, n_t = len(ep), len(tp)
    est_tp = np.zeros(n_e, bool)
    true_tp = np.zeros(n_t, bool)
    if not i.size:
        return Match(est_tp, true_tp, np.zeros((0, 2), int))
    # connected groups of the bipartite candidate graph (estimates 0..n_e-1, truth n_e..n_e+n_t-1)
    graph = coo_matrix((np.ones(i.size), (i, n_e + j)), shape=(n_e + n_t, n_e + n_t))
    _, label = connected_components(graph, directed=False)
    pair_label = label[i]
    order = np.argsort(pair_label, kind="stable")
    i, j, d, pair_label = i[order], j[order], d[order], pair_label[order]
    starts = np.flatnonzero(np.r_[True, pair_label[1:] != pair_label[:-1]])
    ends = np.r_[starts[1:], i.size]
    out = []
    for s, e in zip(starts, ends, strict=True):
        gi, gj, gd = i[s:e], j[s:e], d[s:e]
        if gi.size == 1:
            out.append((gi[0], gj[0]))
            continue
        ue, ie = np.unique(gi, return_inverse=True)
        ut, it = np.unique(gj, return_inverse=True)
        big = 1.0 + gd.sum()
        cost = np.full((ue.size, ut.size), big)
        cost[ie, it] = gd
        rows, cols = linear_sum_assignment(cost)
        ok = cost[rows, cols] < big
        out.extend(zip(ue[rows[ok]], ut[cols[ok]], strict=True))
    pairs = np.array(sorted(out), dtype=int).reshape(-1, 2)
    est_tp[pairs[:, 0]] = True
    true_tp[pairs[:, 1]] = True
    return Match(est_tp, true_tp, pairs)


# --------------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class Scores:
    """Detection scores of an estimated catalog against a truth catalog.

    Counts: ``n_est``, ``n_true`` (catalog sizes), ``tp_est`` (true-positive estimates), ``tp_true``
    (recovered truth sources); ``precision = tp_est / n_est``, ``recall = tp_true / n_true``,
    ``f1 = 2 P R / (P + R)`` (NaN when a catalog is empty; 0 when P + R = 0). Per magnitude bin
    ``[mag_edges[k], mag_edges[k+1])`` (the last closed): recall by truth magnitude and precision by
    estimated magnitude, with their counts. Matched pairs (:attr:`Match.pairs`): ``n_pairs``; position
    error estimate - truth in pixels, per axis (row, col): ``dpos_median`` and ``dpos_rsd`` (robust sd,
    1.4826 MAD); ``dist_median`` (Euclidean, pixels); magnitude error estimate - truth: ``dmag_median``,
    ``dmag_rsd`` (magnitudes). NaN when there are no pairs.
    """

    rule: str
    pos_tol: float
    mag_tol: float
    n_est: int
    n_true: int
    tp_est: int
    tp_true: int
    precision: float
    recall: float
    f1: float
    mag_edges: tuple[float, ...]
    bin_n_true: tuple[int, ...]
    bin_tp_true: tuple[int, ...]
    bin_recall: tuple[float, ...]
    bin_n_est: tuple[int, ...]
    bin_tp_est: tuple[int, ...]
    bin_precision: tuple[float, ...]
    n_pairs: int
    dpos_median: tuple[float, float]
    dpos_rsd: tuple[float, float]
    dist_median: float
    dmag_median: float
    dmag_rsd: float

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (lists for the per-bin tuples); JSON-serialisable."""
        out = {}
        for k in self.__dataclass_fields__:
            v = getattr(self, k)
            out[k] = list(v) if isinstance(v, tuple) else v
        return out

    def table(self):
        """Per-bin astropy Table: mag_lo, mag_hi, n_true, tp_true, recall, n_est, tp_est, precision.

        The overall numbers are in ``table.meta``.
        """
        from astropy.table import Table

        e = np.asarray(self.mag_edges, float)
        t = Table({"mag_lo": e[:-1], "mag_hi": e[1:], "n_true": np.asarray(self.bin_n_true, int),
                   "tp_true": np.asarray(self.bin_tp_true, int), "recall": np.asarray(self.bin_recall, float),
                   "n_est": np.asarray(self.bin_n_est, int), "tp_est": np.asarray(self.bin_tp_est, int),
                   "precision": np.asarray(self.bin_precision, float)})
        t.meta.update({k: v for k, v in self.to_dict().items()
                       if not k.startswith("bin_") and k != "mag_edges"})
        return t

    def __str__(self) -> str:
        return (f"{self.rule}: recall {self.recall:.3f} ({self.tp_true}/{self.n_true}), precision "
                f"{self.precision:.3f} ({self.tp_est}/{self.n_est}), F1 {self.f1:.3f}; {self.n_pairs} pairs, "
                f"median d(row, col) ({self.dpos_median[0]:+.3f}, {self.dpos_median[1]:+.3f}) px, "
                f"median dmag {self.dmag_median:+.3f}")


def score(est, truth, rule: str = "starnet", pos_tol: float = 0.5, mag_tol: float = 0.5,
          mag_edges=None) -> Scores:
    """Score an estimated catalog against a truth catalog.

    ``est``, ``truth``: each a pair ``(pos, mag)`` (``(N, 2)`` row, col in pixels; ``(N,)``
    magnitudes), or a mapping / astropy Table with columns ``row``, ``col``, ``mag`` (or ``pos``,
    ``mag``). ``rule``: ``"starnet"`` (:func:`match_starnet`) or ``"hungarian"``
    (:func:`match_hungarian`); ``pos_tol`` in pixels (L-infinity), ``mag_tol`` in magnitudes.
    ``mag_edges``: increasing bin edges in magnitudes; default the truth's range in 1-mag bins,
    ``[floor(min), floor(min) + 1, ..., max]`` (e.g. ``[15, 16, ..., 22, 22.33]`` for M2). Returns
    :class:`Scores`.
    """
    ep, em = _catalog(est, "est")
    tp, tm = _catalog(truth, "truth")
    if rule == "starnet":
        m = match_starnet(ep, em, tp, tm, pos_tol, mag_tol)
    elif rule == "hungarian":
        m = match_hungarian(ep, em, tp, tm, pos_tol, mag_tol)
    else:
        raise ValueError(f"rule must be 'starnet' or 'hungarian', got {rule!r}")
    edges = _default_edges(tm if tm.size else em) if mag_edges is None else np.asarray(mag_edges, float)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
        raise ValueError(f"mag_edges must be two or more finite, strictly increasing magnitudes, got {edges}")
    n_est, n_true = len(ep), len(tp)
    tp_est, tp_true = int(m.est_tp.sum()), int(m.true_tp.sum())
    precision = tp_est / n_est if n_est else math.nan
    recall = tp_true / n_true if n_true else math.nan
    f1 = _f1(precision, recall)
    bt, bt_tp = _binned(tm, m.true_tp, edges)
    be, be_tp = _binned(em, m.est_tp, edges)
    pi, pj = m.pairs[:, 0], m.pairs[:, 1]
    dpos = ep[pi] - tp[pj]
    dmag = em[pi] - tm[pj]
    n_pairs = len(m.pairs)
    med = (lambda x: float(np.median(x))) if n_pairs else (lambda x: math.nan)
    return Scores(
        rule=rule, pos_tol=float(pos_tol), mag_tol=float(mag_tol), n_est=n_est, n_true=n_true,
        tp_est=tp_est, tp_true=tp_true, precision=precision, recall=recall, f1=f1,
        mag_edges=tuple(float(x) for x in edges),
        bin_n_true=tuple(int(x) for x in bt), bin_tp_true=tuple(int(x) for x in bt_tp),
        bin_recall=tuple(float(a / b) if b else math.nan for a, b in zip(bt_tp, bt, strict=True)),
        bin_n_est=tuple(int(x) for x in be), bin_tp_est=tuple(int(x) for x in be_tp),
        bin_precision=tuple(float(a / b) if b else math.nan for a, b in zip(be_tp, be, strict=True)),
        n_pairs=n_pairs, dpos_median=(med(dpos[:, 0]), med(dpos[:, 1])),
        dpos_rsd=(robust_sd(dpos[:, 0]), robust_sd(dpos[:, 1])),
        dist_median=med(np.hypot(dpos[:, 0], dpos[:, 1])), dmag_median=med(dmag), dmag_rsd=robust_sd(dmag),
    )


def robust_sd(x) -> float:
    """Robust standard deviation ``1.4826 * median(|x - median(x)|)`` (units of ``x``); NaN if empty."""
    x = np.asarray(x, dtype=float).ravel()
    if not x.size:
        return math.nan
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


# --------------------------------------------------------------------------------------------------
# Calibration


def interval_coverage(lo, hi, truth) -> float:
    """Fraction of ``truth`` values inside their intervals ``[lo, hi]`` (closed).

    ``lo``, ``hi``, ``truth``: arrays of one shape (or broadcastable), in the same units. Returns a
    float in [0, 1]. Raises ``ValueError`` on NaN / inf, on ``lo > hi``, on shapes that do not
    broadcast, or when there are no values.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in (("lo", lo), ("hi", hi), ("truth", truth))}
    try:
        b = np.broadcast_arrays(*arrays.values())
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in arrays.items())
        raise ValueError(f"lo, hi and truth must have one shape (or broadcast); got {shapes}") from None
    for name, a in zip(arrays, b, strict=True):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has {int((~np.isfinite(a)).sum())} non-finite values (NaN or inf)")
    lo_b, hi_b, t_b = b
    if not t_b.size:
        raise ValueError("interval_coverage needs at least one value")
    if np.any(lo_b > hi_b):
        raise ValueError(f"lo > hi in {int((lo_b > hi_b).sum())} of {lo_b.size} intervals")
    return float(np.mean((t_b >= lo_b) & (t_b <= hi_b)))


# --------------------------------------------------------------------------------------------------
# Helpers


def _positions(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) of (row, col) pixels, got shape {a.shape}")
    bad = ~np.all(np.isfinite(a), axis=1)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} rows with NaN or inf positions "
                         f"(first at index {int(np.flatnonzero(bad)[0])})")
    return a


def _vector(x, name: str, n: int) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match its positions, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN or inf values (first at index "
                         f"{int(np.flatnonzero(bad)[0])})")
    return a


def _check_inputs(est_pos, est_mag, true_pos, true_mag):
    ep = _positions(est_pos, "est_pos")
    tp = _positions(true_pos, "true_pos")
    return ep, _vector(est_mag, "est_mag", len(ep)), tp, _vector(true_mag, "true_mag", len(tp))


def _tol(x, name: str) -> float:
    v = float(x)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {x!r}")
    return v


def _allowed_pairs(ep, em, tp, tm, pos_tol, mag_tol):
    """Index arrays (i into estimates, j into truth) and Euclidean distances of the allowed pairs."""
    if not (len(ep) and len(tp)):
        z = np.zeros(0, int)
        return z, z, np.zeros(0)
    found = cKDTree(ep).sparse_distance_matrix(cKDTree(tp), pos_tol, p=np.inf, output_type="ndarray")
    i, j = found["i"].astype(int), found["j"].astype(int)
    ok = (np.abs(ep[i] - tp[j]).max(axis=1) < pos_tol) & (np.abs(em[i] - tm[j]) < mag_tol)
    i, j = i[ok], j[ok]
    return i, j, np.hypot(*(ep[i] - tp[j]).T)


def _catalog(c, name: str):
    if isinstance(c, Mapping) or hasattr(c, "colnames"):
        keys = c.keys() if isinstance(c, Mapping) else c.colnames
        if "pos" in keys:
            pos = c["pos"]
        elif "row" in keys and "col" in keys:
            pos = np.column_stack([np.asarray(c["row"], float), np.asarray(c["col"], float)])
        else:
            raise ValueError(f"{name} needs columns 'row' and 'col' (or 'pos'), has {list(keys)}")
        if "mag" not in keys:
            raise ValueError(f"{name} needs a 'mag' column (magnitudes), has {list(keys)}")
        mag = c["mag"]
    elif isinstance(c, tuple | list) and len(c) == 2:
        pos, mag = c
    else:
        raise ValueError(f"{name} must be a (pos, mag) pair or a table with row, col, mag; "
                         f"got {type(c).__name__}")
    p = _positions(pos, f"{name}_pos")
    return p, _vector(mag, f"{name}_mag", len(p))


def _default_edges(mags) -> np.ndarray:
    if not np.size(mags):
        return np.array([0.0, 1.0])
    lo, hi = float(np.min(mags)), float(np.max(mags))
    edges = np.r_[np.arange(math.floor(lo), hi, 1.0), hi]
    return edges if edges.size >= 2 else np.array([hi, hi + 1.0])


def _binned(mags, hit, edges):
    k = np.searchsorted(edges, mags, side="right") - 1
    k[mags == edges[-1]] = edges.size - 2  # last bin closed
    inside = (k >= 0) & (k < edges.size - 1)
    n = np.bincount(k[inside], minlength=edges.size - 1)
    h = np.bincount(k[inside], weights=hit[inside].astype(float), minlength=edges.size - 1).astype(int)
    return n, h


def _f1(p: float, r: float) -> float:
    if math.isnan(p) or math.isnan(r):
        return math.nan
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)
