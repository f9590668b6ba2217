"""Noise of an image without a noise map, estimated from the image itself: :func:`estimate_sigma` (robust,
sources masked) and :func:`neighbour_correlation` (whether the noise is correlated between neighbouring
pixels, as in drizzled or resampled images). Arrays ``[row, col]``; masks True = use.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import NamedTuple

import numpy as np

from starmodels.sky.checks import is_int

log = logging.getLogger(__name__)

_RESIDUAL_VAR = 1.25  # variance of r = x - (4 neighbours) / 4 for white noise of unit variance

MAD_TO_SIGMA = 1.482602218505602
"""``1 / Phi^-1(3/4)``: the median absolute deviation of a Gaussian times this is its sigma."""


def _image_and_use(image, mask) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(image)
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise ValueError(f"image must be a 2-D array of real numbers, got shape {x.shape}, dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float64)
    use = np.isfinite(x)
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != x.shape:
            raise ValueError(f"mask must be a boolean array (True = use) of the image's shape {x.shape}, got "
                             f"shape {m.shape} and dtype {m.dtype}")
        use &= m
    return x, use


def _check_lag(lag) -> int:
    if not is_int(lag) or lag < 2:
        raise ValueError(f"lag must be an integer >= 2 (pixels), got {lag!r}")
    return int(lag)


def _robust_scale(v: np.ndarray) -> float:
    """``1.4826 * median(|v - median(v)|)``: the sigma of Gaussian values, robust to outliers."""
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def _residual(x: np.ndarray, use: np.ndarray, lag: int) -> np.ndarray:
    """``r = x[i, j] - (x[i, j-L] + x[i, j+L] + x[i-L, j] + x[i+L, j]) / 4``; NaN where any is unusable."""
    xm = np.where(use, x, np.nan)
    r = np.full(x.shape, np.nan)
    L = lag
    if x.shape[0] > 2 * L and x.shape[1] > 2 * L:
        c = xm[L:-L, L:-L]
        partners = xm[L:-L, :-2 * L] + xm[L:-L, 2 * L:] + xm[:-2 * L, L:-L] + xm[2 * L:, L:-L]
        r[L:-L, L:-L] = c - 0.25 * partners
    return r


def _source_mask(x: np.ndarray, use: np.ndarray, lag: int) -> np.ndarray:
    """True on pixels near sources: the 5x5-smoothed image differs from its median by > 3 clipped sigma.

    The sigma of the smoothed image is its robust scale over the pixels not yet flagged, iterated
    until the flags stop changing; flagged pixels are grown by ``lag`` pixels (the residual's reach).
    """
    from scipy.ndimage import binary_dilation, uniform_filter

    w = use.astype(float)
    num = uniform_filter(np.where(use, x, 0.0), 5, mode="constant")
    den = uniform_filter(w, 5, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(den > 0.2, num / den, np.nan)
    ok = np.isfinite(s) & use
    flagged = np.zeros(x.shape, bool)
    for _ in range(20):
        v = s[ok & ~flagged]
        if v.size < 10:
            break
        med, scale = np.median(v), _robust_scale(v)
        if scale == 0:
            break
        new = ok & (np.abs(s - med) > 3.0 * scale)
        if np.array_equal(new, flagged):
            break
        flagged = new
    return binary_dilation(flagged, iterations=lag) if flagged.any() else flagged


def _residuals(image, mask, lag, mask_sources) -> tuple[np.ndarray, np.ndarray]:
    """Validated image and its high-pass residual (NaN where unusable), sources masked if asked."""
    x, use = _image_and_use(image, mask)
    lag = _check_lag(lag)
    r = _residual(x, use, lag)
    n_all = int(np.isfinite(r).sum())
    if n_all < 10:
        raise ValueError(f"too few usable pixels to estimate the noise: {n_all} residuals (need >= 10; the "
                         f"image is {x.shape[0]}x{x.shape[1]}, {int(use.sum())} pixels used, lag {lag})")
    if mask_sources:
        src = _source_mask(x, use, lag)
        r_src = _residual(x, use & ~src, lag)
        n = int(np.isfinite(r_src).sum())
        if n >= max(10, n_all // 20):
            return x, r_src
        warnings.warn(f"masking sources would leave {n} of {n_all} residuals; the noise is estimated from "
                      "all pixels (sources may bias it high)", UserWarning, stacklevel=3)
    return x, r


def estimate_sigma(image, mask=None, box: int | None = None, *, lag: int = 3, mask_sources: bool = True):
    """Robust estimate of the noise standard deviation of an image without a noise map (image units).

    The image is high-pass filtered with a cross of four pixels ``lag`` pixels away,

        ``r[i, j] = x[i, j] - (x[i, j-L] + x[i, j+L] + x[i-L, j] + x[i+L, j]) / 4``,

    which removes a smooth signal (exactly for a linear gradient; curvature leaves ``~ L^2/4`` times the
    Laplacian). For noise uncorrelated beyond ``L - 1`` pixels, ``var(r) = (1 + 4/16) sigma^2 =
    1.25 sigma^2``, so

        ``sigma = 1.4826 * median(|r - median(r)|) / sqrt(1.25)``

    (1.4826 turns a median absolute deviation into a Gaussian sigma). ``r`` is used where the pixel and
    its four partners are all usable (``mask`` True and finite). With ``mask_sources`` the pixels near
    sources are left out first: those where the 5x5-smoothed image is more than 3 (iteratively clipped)
    sigma from its median, grown by ``lag`` pixels. For noise correlated between neighbours (drizzled or
    resampled images, see :func:`neighbour_correlation`) this is the per-pixel sigma as long as the
    correlation has died out at ``lag`` pixels; ``lag=1`` would underestimate it by about
    ``sqrt(1 - rho)`` for a neighbour correlation ``rho``. The estimate is of the background noise:
    the extra (Poisson) noise on bright sources is not in it (see
    :class:`starmodels.noise.VariableGaussian`).

    Args:
        image: ``(H, W)`` image (any flux unit).
        mask: ``(H, W)`` bool, True = use the pixel; default every finite pixel.
        box: None (default): one sigma for the whole image. An odd integer ``>= 3``: a per-pixel map, the
            same estimate over the ``box x box`` window centred on each pixel; where a window holds fewer
            than ``max(9, box^2 / 4)`` usable residuals the whole-image value is used.
        lag: distance in pixels (>= 2) of the four partners.
        mask_sources: leave out pixels near sources (recommended for cutouts of crowded fields).

    Returns:
        A float (image units), or with ``box`` an ``(H, W)`` float64 array.

    Raises:
        ValueError: a bad image, mask, box or lag, or fewer than 10 usable residuals.
    """
    x, r = _residuals(image, mask, lag, mask_sources)
    good = r[np.isfinite(r)]
    norm = math.sqrt(_RESIDUAL_VAR)
    sigma = _robust_scale(good) / norm
    if box is None:
        return sigma
    if not is_int(box) or box < 3 or box % 2 == 0:
        raise ValueError(f"box must be an odd integer >= 3 (pixels), got {box!r}")
    from scipy.ndimage import uniform_filter

    dev = np.abs(r - np.median(good))  # NaN where unusable
    half = box // 2
    padded = np.pad(dev, half, constant_values=np.nan)
    out = np.empty(x.shape)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (box, box))
    rows = max(1, int(4e6 // (x.shape[1] * box * box)))  # bounds the memory of one chunk (~32 MB)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        for i in range(0, x.shape[0], rows):
            out[i:i + rows] = np.nanmedian(windows[i:i + rows].reshape(-1, x.shape[1], box * box), axis=2)
    count = uniform_filter(np.isfinite(dev).astype(float), box, mode="constant") * box * box
    out = MAD_TO_SIGMA * out / norm
    return np.where((count >= max(9, box * box / 4) - 1e-6) & np.isfinite(out), out, sigma)


class NeighbourCorrelation(NamedTuple):
    """Correlation coefficients of the noise in horizontally and vertically adjacent pixels."""

    horizontal: float
    """between ``[i, j]`` and ``[i, j + 1]`` (along a row, x)."""
    vertical: float
    """between ``[i, j]`` and ``[i + 1, j]`` (along a column, y)."""
    n_horizontal: int
    """number of pixel pairs used along rows."""
    n_vertical: int
    """number of pixel pairs used along columns."""

    @property
    def mean(self) -> float:
        """Mean of the horizontal and vertical coefficients."""
        return 0.5 * (self.horizontal + self.vertical)


def _robust_corr(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 10:
        return float("nan"), int(a.size)
    s, d = _robust_scale(a + b) ** 2, _robust_scale(a - b) ** 2
    return (float((s - d) / (s + d)) if s + d > 0 else float("nan")), int(a.size)


def neighbour_correlation(image, mask=None, *, lag: int = 3, mask_sources: bool = True
                          ) -> NeighbourCorrelation:
    """Correlation coefficient of the noise in adjacent pixels (dimensionless, -1 to 1), along x and y.

    Computed on the high-pass residual ``r`` of :func:`estimate_sigma` (same ``lag`` and source masking),
    between ``r[i, j]`` and ``r[i, j + 1]`` (horizontal) and ``r[i, j]`` and ``r[i + 1, j]`` (vertical), with
    the robust estimator of Gnanadesikan and Kettenring: ``rho = (S^2 - D^2) / (S^2 + D^2)`` with ``S``
    and ``D`` the robust scales (1.4826 x MAD) of ``r_a + r_b`` and ``r_a - r_b``. The residuals of
    adjacent pixels share no pixel, so white noise gives 0. If the noise correlation ``rho_k`` vanishes at
    lags ``k >= lag - 1``, the result is the neighbour correlation ``rho_1`` of the noise itself; a
    longer-range correlation biases it low (``(1.25 rho_1 - 0.5 rho_(L-1)) / 1.25`` to first order;
    e.g. noise smoothed by a 3x3 box has ``rho_1 = 2/3`` and gives 0.53 at ``lag=3``, 0.67 at
    ``lag=4``).

    A clearly positive value (more than ~0.1) means the noise is correlated (drizzled, resampled or
    smoothed images): a likelihood that treats pixels as independent then over-weights the data, by
    up to ``1 + 4 rho`` in the variance of smooth quantities for nearest-neighbour correlation; inflate
    sigma or thin the pixels accordingly.

    Args:
        image: ``(H, W)`` image.
        mask: ``(H, W)`` bool, True = use; default every finite pixel.
        lag: the residual's reach, pixels (>= 2), as in :func:`estimate_sigma`.
        mask_sources: leave out pixels near sources first.

    Returns:
        :class:`NeighbourCorrelation` ``(horizontal, vertical, n_horizontal, n_vertical)``, NaN where
        fewer than 10 pairs are usable; ``.mean`` averages the two.
    """
    _, r = _residuals(image, mask, lag, mask_sources)
    h, nh = _robust_corr(r[:, :-1].ravel(), r[:, 1:].ravel())
    v, nv = _robust_corr(r[:-1, :].ravel(), r[1:, :].ravel())
    return NeighbourCorrelation(h, v, nh, nv)
