"""A log-normal Gaussian-process sky with an inferred power spectrum ("correlated field").

The model follows the idea of the correlated-field model of Arras et al. (2022)
and Frank, Leike & Enßlin (2021): a stationary Gaussian field whose power
spectrum is itself uncertain. It is written here from the maths below.

Grid and units
--------------
The sky pixels of the data region form an ``(H, W)`` array with pixel scale
``distance`` (any unit the user likes, e.g. arcsec). The field lives on a
larger periodic grid of ``(Hp, Wp)`` pixels: each side is ``ceil(pad * side)``,
rounded up to an even number. The data region is the top-left ``(H, W)`` corner
of that grid, so with ``pad >= 2`` structure leaving one edge of the data region
does not come back in at the opposite edge (with ``pad = 1`` it does: the data
region is then a torus). Wavenumbers ``k`` are in cycles per ``distance`` unit
(``numpy.fft.fftfreq(n, d=distance)`` on each axis); ``|k|`` ranges from 0 to
the Nyquist frequency ``1 / (2 distance)`` on each axis.

The field
---------
With ``N = Hp * Wp`` white latents ``xi ~ N(0, 1)`` of shape ``(Hp, Wp)``::

    s(x) = offset_mean + sum_k  a(k) xi(k) cas(2 pi k . x),     cas(u) = cos(u) + sin(u),

i.e. the un-normalised discrete Hartley transform of ``a * xi``, computed as
``Re(FFT) - Im(FFT)``. The Hartley transform is real and, divided by
``sqrt(N)``, orthogonal, so the field is real and every latent has a N(0, 1)
prior. Because ``a`` depends on ``|k|`` only, the covariance is stationary::

    Cov[s(x), s(x + d)] = sum_k a(k)^2 cos(2 pi k . d).

The zero mode ``k = 0`` has amplitude ``a(0) = offset_std``: it adds
``offset_std * xi[0, 0]`` to every pixel. The other modes have
``a(k) = sqrt(P(|k|))``, where ``P`` is the *variance per Fourier mode*.

Normalisation
-------------
``P`` is scaled so that ``sum over the N - 1 non-zero modes of P(|k|) = fluctuations**2``.
By the covariance formula this is exactly the prior variance of every pixel
once the offset is removed: ``fluctuations`` is the pixel standard deviation of
``s - offset_mean - offset_std * xi[0, 0]`` (in the units of ``s``, i.e. of the
log-sky), for any spectral shape. :func:`empirical_power_spectrum` uses the same
convention, ``|FFT(s)(k)|^2 / N^2`` averaged over the modes of a bin, so it
estimates ``P`` without bias for a field drawn from the model.

Spectral shape
--------------
``P`` is defined on *bins* of ``|k|``: by default one bin per distinct value of
``|k|`` on the padded grid (exact, no interpolation); with ``log_bins=n`` the
non-zero ``|k|`` are grouped into at most ``n`` logarithmically spaced bins
(empty ones dropped) whose position is the geometric mean of their modes' ``|k|``.
With ``t = ln|k|`` of the non-zero bins (``t_0 < ... < t_m``)::

    ln P(t) = loglogavgslope * (t - t_0) + y(t) + constant,

where the constant fixes the normalisation above and ``y`` is a non-parametric
deviation: ``y = flexibility * (integral of a Wiener process in t)``
``[+ asperity * (a Wiener process in t)]``, started at ``y(t_0) = y'(t_0) = 0`` and
simulated exactly on the (unequal) steps between bins from its own white
latents ``spectrum_xi``. The straight line through ``y(t_0)`` and ``y(t_m)`` is
then subtracted, so ``y`` vanishes at both ends and the mean slope of
``ln P`` against ``ln|k|`` over the whole range is exactly ``loglogavgslope``.
``flexibility`` is in units of ``ln P`` per e-fold of ``k`` to the power 3/2,
``asperity`` in ``ln P`` per square-root e-fold. Logarithms are natural, but
the slope is the same in any base. The units of ``distance`` only shift ``t``,
so the field as a function of its latents does not depend on them.

Hyperparameters
---------------
``fluctuations``, ``flexibility``, ``asperity`` and ``offset_std`` have
log-normal priors given by the mean and standard deviation of the positive
quantity itself (see :func:`lognormal`); ``loglogavgslope`` has a normal prior
given by (mean, std); ``offset_mean`` is a fixed number. :class:`FieldPriors`
holds these settings; :func:`sample_correlated_field` turns them into NumPyro
sample sites named ``<name>.<setting>`` plus the latents ``<name>.xi`` (shape
``(Hp, Wp)``) and ``<name>.spectrum_xi`` (shape ``(2 or 3, n_bins - 1)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from starmodels.sky.checks import is_number

#: Default largest number of spectral bins whose amplitude :func:`sample_correlated_field` records.
RECORD_MAX_BINS = 512

_POSITIVE = ("fluctuations", "flexibility", "asperity", "offset_std")


def _padded_side(side: int, pad: float) -> int:
    n = math.ceil(pad * side - 1e-9)  # tolerance: 1.1 * 30 must give 33, not 34
    return max(n + n % 2, side)


@dataclass(frozen=True, eq=False)
class FieldGrid:
    """The pixel grid of a correlated field and its Fourier-space bookkeeping, built once.

    Parameters
    ----------
    shape:
        ``(H, W)``: sky pixels of the data region, each at least 2.
    pad:
        Padding factor (>= 1): each side of the periodic grid is ``ceil(pad * side)``
        rounded up to an even number. The data region is its top-left corner.
    distance:
        Pixel scale, in the user's length or angle unit (e.g. arcsec per pixel).
    log_bins:
        ``None`` (default): one power-spectrum bin per distinct ``|k|``. An integer
        ``n >= 2``: at most ``n`` log-spaced bins of ``|k|`` (empty ones dropped).

    Derived attributes (numpy arrays, read-only)
    --------------------------------------------
    padded_shape:
        ``(Hp, Wp)``, the shape of the latents ``xi`` and of the periodic field.
    k_map:
        ``|k|`` of every mode of the padded grid, in cycles per ``distance`` unit,
        shape ``(Hp, Wp)``, in ``numpy.fft`` order (zero mode at ``[0, 0]``).
    bin_index:
        Bin of every mode, shape ``(Hp, Wp)``: 0 for the zero mode only, ``1..n_bins``
        for the non-zero bins in increasing ``|k|``.
    bin_k:
        ``|k|`` of each bin, shape ``(n_bins + 1,)``, cycles per ``distance`` unit;
        ``bin_k[0] = 0`` is the zero mode.
    bin_count:
        Number of modes in each bin, shape ``(n_bins + 1,)``; ``bin_count[0] = 1``.
    """

    shape: tuple[int, int]
    pad: float = 2.0
    distance: float = 1.0
    log_bins: int | None = None
    padded_shape: tuple[int, int] = field(init=False)
    k_map: np.ndarray = field(init=False, repr=False)
    bin_index: np.ndarray = field(init=False, repr=False)
    bin_k: np.ndarray = field(init=False, repr=False)
    bin_count: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        shape = self.shape
        if (not isinstance(shape, tuple | list) or len(shape) != 2
                or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)):
            raise ValueError(f"FieldGrid shape must be two integers (H, W), got {shape!r}")
        if min(shape) < 2:
            raise ValueError(f"FieldGrid shape must be at least 2 pixels on each side, got {tuple(shape)}")
        if not is_number(self.pad) or not np.isfinite(self.pad) or self.pad < 1:
            raise ValueError(f"FieldGrid pad must be a finite number >= 1, got {self.pad!r}")
        if not is_number(self.distance) or not np.isfinite(self.distance) or self.distance <= 0:
            raise ValueError(f"FieldGrid distance (pixel scale) must be a finite number > 0, "
                             f"got {self.distance!r}")
        if self.log_bins is not None and (not isinstance(self.log_bins, int | np.integer)
                                          or isinstance(self.log_bins, bool) or self.log_bins < 2):
            raise ValueError(f"FieldGrid log_bins must be None or an integer >= 2, got {self.log_bins!r}")
        shape = (int(shape[0]), int(shape[1]))
        hp, wp = _padded_side(shape[0], float(self.pad)), _padded_side(shape[1], float(self.pad))
        distance = float(self.distance)

        k_map = np.hypot(np.fft.fftfreq(hp, d=distance)[:, None], np.fft.fftfreq(wp, d=distance)[None, :])
        # exact integer key of |k|^2 * (Hp Wp distance)^2, so equal |k| fall in one bin without rounding
        iy = np.minimum(np.arange(hp), hp - np.arange(hp)).astype(np.int64)
        ix = np.minimum(np.arange(wp), wp - np.arange(wp)).astype(np.int64)
        key = iy[:, None] ** 2 * wp**2 + ix[None, :] ** 2 * hp**2
        unique, index, count = np.unique(key.ravel(), return_inverse=True, return_counts=True)
        bin_k = np.sqrt(unique.astype(float)) / (hp * wp * distance)
        index = index.reshape(hp, wp)
        if self.log_bins is not None:
            index, bin_k, count = _log_bins(bin_k, count, index, int(self.log_bins))
        for name, value in (("shape", shape), ("distance", distance), ("padded_shape", (hp, wp)),
                            ("k_map", k_map), ("bin_index", index), ("bin_k", bin_k), ("bin_count", count)):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "pad", float(self.pad))

    @property
    def n_bins(self) -> int:
        """Number of non-zero power-spectrum bins (the zero mode is not counted)."""
        return len(self.bin_k) - 1

    @property
    def size(self) -> int:
        """``Hp * Wp``: the number of modes, latents and pixels of the padded grid."""
        return self.padded_shape[0] * self.padded_shape[1]

    @property
    def k_bins(self) -> np.ndarray:
        """``|k|`` of the non-zero bins, shape ``(n_bins,)``, in cycles per ``distance`` unit."""
        return self.bin_k[1:]


def _log_bins(unique_k, unique_count, unique_index, n):
    """Group the non-zero distinct ``|k|`` into ``n`` log-spaced bins; drop empty ones."""
    k, c = unique_k[1:], unique_count[1:]
    edges = np.geomspace(k[0], k[-1], n + 1)
    which = np.clip(np.searchsorted(edges, k, side="right") - 1, 0, n - 1)
    used, label = np.unique(which, return_inverse=True)
    counts = np.bincount(label, weights=c, minlength=len(used))
    log_mean = np.bincount(label, weights=c * np.log(k), minlength=len(used)) / counts
    relabel = np.concatenate([[0], label + 1])  # distinct-|k| index -> log-bin index; zero mode stays 0
    bin_k = np.concatenate([[0.0], np.exp(log_mean)])
    bin_count = np.concatenate([[1], counts]).astype(np.int64)
    return relabel[unique_index], bin_k, bin_count


def lognormal(mean: float, std: float) -> dist.LogNormal:
    """The log-normal distribution of a positive quantity with the given ``mean`` and ``std``.

    Both are in the units of the quantity. ``sigma^2 = ln(1 + (std / mean)^2)``,
    ``mu = ln(mean) - sigma^2 / 2``.
    """
    mean, std = float(mean), float(std)
    if not (np.isfinite(mean) and mean > 0 and np.isfinite(std) and std > 0):
        raise ValueError(f"lognormal needs a finite mean > 0 and std > 0, got mean={mean}, std={std}")
    sigma2 = math.log1p((std / mean) ** 2)
    return dist.LogNormal(math.log(mean) - 0.5 * sigma2, math.sqrt(sigma2))


def _pair(name: str, value, positive_mean: bool) -> tuple[float, float]:
    if (not isinstance(value, tuple | list) or len(value) != 2 or not all(is_number(v) for v in value)):
        raise ValueError(f"FieldPriors {name} must be a pair of numbers (mean, std), got {value!r}")
    mean, std = float(value[0]), float(value[1])
    if not (np.isfinite(mean) and np.isfinite(std)):
        raise ValueError(f"FieldPriors {name}: mean and std must be finite, got ({mean}, {std})")
    if std <= 0:
        raise ValueError(f"FieldPriors {name}: std must be > 0, got {std}")
    if positive_mean and mean <= 0:
        raise ValueError(f"FieldPriors {name}: mean must be > 0 (a positive quantity), got {mean}")
    return mean, std


@dataclass(frozen=True)
class FieldPriors:
    """Prior settings of a correlated field; every pair is ``(mean, std)`` of the quantity.

    Attributes
    ----------
    fluctuations:
        Pixel standard deviation of the log-sky once the offset is removed
        (dimensionless, in units of the log-field). Log-normal prior. Default (1.0, 0.5).
    loglogavgslope:
        Mean slope of ``ln P`` against ``ln|k|``. Normal prior. Default (-4.0, 0.5):
        a smooth sky dominated by large scales (-2 would give equal variance per
        e-fold of ``k`` in 2-D).
    flexibility:
        Strength of the integrated-Wiener-process deviation from the power law,
        ``ln P`` per e-fold^(3/2). Log-normal prior. Default (1.0, 0.5). ``None``
        turns the deviation off (pure power law; no ``spectrum_xi`` latents).
    asperity:
        Strength of an extra Wiener-process (rough) deviation, ``ln P`` per
        e-fold^(1/2). Log-normal prior. Default ``None`` (off). Needs ``flexibility``.
    offset_mean:
        Fixed mean of the log-sky (e.g. the log of a typical sky level). Default 0.0.
    offset_std:
        Prior standard deviation of the field's zero mode (the log-sky's overall
        level) about ``offset_mean``. Log-normal prior. Default (1.0, 0.5).
    """

    fluctuations: tuple[float, float] = (1.0, 0.5)
    loglogavgslope: tuple[float, float] = (-4.0, 0.5)
    flexibility: tuple[float, float] | None = (1.0, 0.5)
    asperity: tuple[float, float] | None = None
    offset_mean: float = 0.0
    offset_std: tuple[float, float] = (1.0, 0.5)

    def __post_init__(self):
        for name in ("fluctuations", "loglogavgslope", "flexibility", "asperity", "offset_std"):
            value = getattr(self, name)
            if value is None and name in ("flexibility", "asperity"):
                continue
            object.__setattr__(self, name, _pair(name, value, positive_mean=name in _POSITIVE))
        if self.asperity is not None and self.flexibility is None:
            raise ValueError("FieldPriors asperity needs flexibility (set flexibility or asperity=None)")
        if not is_number(self.offset_mean) or not np.isfinite(self.offset_mean):
            raise ValueError(f"FieldPriors offset_mean must be a finite number, got {self.offset_mean!r}")
        object.__setattr__(self, "offset_mean", float(self.offset_mean))

    def distribution(self, setting: str) -> dist.Distribution:
        """The prior of hyperparameter ``setting`` (e.g. ``"fluctuations"``), a NumPyro distribution."""
        value = getattr(self, setting, None) if setting in _POSITIVE + ("loglogavgslope",) else None
        if value is None:
            raise ValueError(f"FieldPriors has no sampled setting {setting!r}")
        return lognormal(*value) if setting in _POSITIVE else dist.Normal(*value)

    @property
    def hyperparameters(self) -> tuple[str, ...]:
        """The sampled hyperparameters, in sampling order (depends on which are switched on)."""
        names = ["fluctuations", "loglogavgslope"]
        names += [n for n in ("flexibility", "asperity") if getattr(self, n) is not None]
        return tuple(names + ["offset_std"])

    def spectrum_rows(self) -> int:
        """Rows of ``spectrum_xi``: 2 with flexibility, 3 with asperity too, 0 without flexibility."""
        return 0 if self.flexibility is None else 2 + (self.asperity is not None)

    def site_names(self, name: str = "sky") -> tuple[str, ...]:
        """Names of the sample sites :func:`sample_correlated_field` creates, ``<name>.<setting>``."""
        latents = ["xi"] + (["spectrum_xi"] if self.flexibility is not None else [])
        return tuple(f"{name}.{n}" for n in (*self.hyperparameters, *latents))


def _check_params(params, grid: FieldGrid, needed: tuple[str, ...]):
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict of hyperparameters and latents, got {type(params).__name__}")
    missing = [n for n in needed if n not in params]
    if missing:
        raise ValueError(f"params is missing {missing} (has {sorted(params)})")
    flex, asp = params.get("flexibility"), params.get("asperity")
    if asp is not None and flex is None:
        raise ValueError("params: asperity needs flexibility")
    if flex is not None:
        rows = 2 + (asp is not None)
        if "spectrum_xi" not in params:
            raise ValueError("params: flexibility needs the latents spectrum_xi")
        want = (rows, grid.n_bins - 1)
        if tuple(np.shape(params["spectrum_xi"])) != want:
            raise ValueError(f"params spectrum_xi must have shape {want} for this grid (flexibility"
                             f"{' and asperity' if asp is not None else ''}), "
                             f"got {tuple(np.shape(params['spectrum_xi']))}")
    if "xi" in needed and tuple(np.shape(params["xi"])) != grid.padded_shape:
        raise ValueError(f"params xi must have the padded shape {grid.padded_shape}, "
                         f"got {tuple(np.shape(params['xi']))}")


def _deviation(t: np.ndarray, spectrum_xi, flexibility, asperity):
    """Integrated Wiener process (+ optional Wiener process) in ``t``, with its end-to-end trend removed."""
    dt = np.diff(t)
    v_step = flexibility * np.sqrt(dt) * spectrum_xi[0]  # slope increments: Var = flexibility^2 dt
    v = jnp.concatenate([jnp.zeros(1, v_step.dtype), jnp.cumsum(v_step)])
    # exact step of the integral: trapezoid of the slope + the part of the integral independent of it
    y_step = dt * 0.5 * (v[:-1] + v[1:]) + flexibility * np.sqrt(dt**3 / 12.0) * spectrum_xi[1]
    if asperity is not None:
        y_step = y_step + asperity * np.sqrt(dt) * spectrum_xi[2]
    y = jnp.concatenate([jnp.zeros(1, y_step.dtype), jnp.cumsum(y_step)])
    return y - y[-1] * (t - t[0]) / (t[-1] - t[0])


def _log_power(params, grid: FieldGrid):
    """``ln P`` of the non-zero bins, normalised so that ``sum_modes P = fluctuations^2``."""
    t = np.log(grid.k_bins)
    log_p = params["loglogavgslope"] * (t - t[0])
    if params.get("flexibility") is not None:
        log_p = log_p + _deviation(t, params["spectrum_xi"], params["flexibility"], params.get("asperity"))
    log_norm = jax.nn.logsumexp(log_p + np.log(grid.bin_count[1:]))
    return 2.0 * jnp.log(params["fluctuations"]) + log_p - log_norm


def _hartley(x):
    """Un-normalised 2-D discrete Hartley transform of a real array (last two axes)."""
    f = jnp.fft.fft2(x)
    return f.real - f.imag


def correlated_field(params: Mapping, grid: FieldGrid, *, padded: bool = False):
    """The log-sky for given hyperparameters and latents (pure JAX: jit-able and differentiable).

    Parameters
    ----------
    params:
        ``fluctuations`` (> 0, log-field units), ``loglogavgslope``, ``offset_std`` (> 0),
        ``xi`` (shape ``grid.padded_shape``, the white excitations; ``xi[0, 0]`` drives the
        zero mode), optionally ``offset_mean`` (default 0) and ``flexibility`` (> 0) with
        ``spectrum_xi`` (shape ``(2, n_bins - 1)``, or ``(3, n_bins - 1)`` with ``asperity``).
        Missing or ``None`` ``flexibility``/``asperity`` switch those parts off.
    grid:
        A :class:`FieldGrid` (hashable by identity, so it can be a static argument of ``jax.jit``).
    padded:
        Return the field on the whole periodic grid instead of the data region.

    Returns
    -------
    ``(log_field, amplitude)``: the log-sky on the data region, shape ``grid.shape``
    (``grid.padded_shape`` if ``padded``), and the amplitude spectrum ``sqrt(P)`` of
    the non-zero bins, shape ``(grid.n_bins,)`` at ``|k| = grid.k_bins`` (log-field units
    per mode; the zero mode's amplitude is ``offset_std``).
    """
    _check_params(params, grid, ("fluctuations", "loglogavgslope", "offset_std", "xi"))
    amplitude = jnp.exp(0.5 * _log_power(params, grid))
    per_bin = jnp.concatenate([jnp.reshape(params["offset_std"], (1,)).astype(amplitude.dtype), amplitude])
    field_ = params.get("offset_mean", 0.0) + _hartley(per_bin[grid.bin_index] * params["xi"])
    if not padded:
        field_ = field_[: grid.shape[0], : grid.shape[1]]
    return field_, amplitude


def model_power_spectrum(params: Mapping, grid: FieldGrid):
    """The model's power spectrum for given hyperparameters: ``(k, P)``.

    ``k = grid.k_bins`` in cycles per ``distance`` unit and ``P`` the variance per
    Fourier mode of each non-zero bin (log-field units squared), shape ``(n_bins,)``,
    with ``sum(P * grid.bin_count[1:]) = fluctuations^2``. ``params`` needs
    ``fluctuations`` and ``loglogavgslope`` (and ``flexibility``, ``asperity``,
    ``spectrum_xi`` if used); ``xi`` and the offset are not used.
    """
    _check_params(params, grid, ("fluctuations", "loglogavgslope"))
    return grid.k_bins, jnp.exp(_log_power(params, grid))


def model_covariance(params: Mapping, grid: FieldGrid):
    """Prior covariance of the field's fluctuations (offset excluded) as a function of lag.

    Returns an array of shape ``grid.padded_shape`` (log-field units squared) whose
    element ``[dy, dx]`` is ``Cov[s(y, x), s(y + dy, x + dx)]`` for lags in pixels,
    taken modulo the padded grid (negative lags at the far end, as in ``numpy.fft``).
    ``[0, 0]`` is the pixel variance, ``fluctuations^2``. Add ``offset_std^2`` for the
    covariance including the zero mode.
    """
    _, power = model_power_spectrum(params, grid)
    per_mode = jnp.concatenate([jnp.zeros(1, power.dtype), power])[grid.bin_index]
    return jnp.fft.fft2(per_mode).real


def empirical_power_spectrum(field_, grid: FieldGrid):
    """Radially averaged power spectrum of field(s) on the padded grid, normalised like the model's ``P``.

    ``field_`` has shape ``(..., Hp, Wp)`` (e.g. from ``correlated_field(..., padded=True)``),
    in log-field units. Returns ``(k, P)``: ``k = grid.k_bins`` in cycles per ``distance``
    unit and ``P``, shape ``(..., n_bins)``, the mean of ``|FFT(field)|^2 / (Hp Wp)^2`` over
    the modes of each non-zero bin (one spectrum per leading index; average them
    yourself). For a field drawn from the model, ``E[P] =`` :func:`model_power_spectrum`,
    and ``sum(P * grid.bin_count[1:])`` is the field's spatial variance on the padded grid.
    """
    x = jnp.asarray(field_)
    if x.ndim < 2 or tuple(x.shape[-2:]) != grid.padded_shape:
        hp, wp = grid.padded_shape
        raise ValueError(f"empirical_power_spectrum: field must have shape (..., {hp}, {wp}) (the padded "
                         f"grid; use correlated_field(..., padded=True)), got {tuple(x.shape)}")
    power = jnp.abs(jnp.fft.fft2(x)) ** 2 / grid.size**2
    flat = jnp.moveaxis(power.reshape(*power.shape[:-2], grid.size), -1, 0)
    sums = jax.ops.segment_sum(flat, grid.bin_index.ravel(), num_segments=grid.n_bins + 1)
    mean = jnp.moveaxis(sums, 0, -1) / grid.bin_count
    return grid.k_bins, mean[..., 1:]


#: :func:`correlated_field` compiled once per grid: a program that samples the field is fast even when run
#: op by op outside a jit (as SVI's guide set-up runs it).
_correlated_field_jit = jax.jit(correlated_field, static_argnums=1)


def sample_correlated_field(grid: FieldGrid, priors: FieldPriors | None = None, name: str = "sky",
                            record_amplitude: bool | None = None):
    """NumPyro program piece: sample a correlated field and return the log-sky on the data region.

    Sample sites (see :meth:`FieldPriors.site_names`), each ``<name>.<x>``:
    ``fluctuations``, ``loglogavgslope``, [``flexibility``], [``asperity``], ``offset_std``
    (the priors of ``priors``, default :class:`FieldPriors`), ``xi`` (N(0, 1), shape
    ``grid.padded_shape``) and [``spectrum_xi``] (N(0, 1), shape ``(2 or 3, n_bins - 1)``).
    If ``record_amplitude`` (default: when ``grid.n_bins <= RECORD_MAX_BINS``), the
    amplitude spectrum ``sqrt(P)`` at ``grid.k_bins`` is kept as the deterministic site
    ``<name>.amplitude``; no per-pixel array is recorded.

    Returns the log-sky (natural log), shape ``grid.shape``: its exponential is the sky
    in whatever units ``offset_mean`` is the log of a typical level in.
    """
    priors = FieldPriors() if priors is None else priors
    if not isinstance(grid, FieldGrid):
        raise ValueError(f"sample_correlated_field: grid must be a FieldGrid, got {type(grid).__name__}")
    if not isinstance(priors, FieldPriors):
        raise ValueError(f"sample_correlated_field: priors must be FieldPriors, got {type(priors).__name__}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"sample_correlated_field: name must be a non-empty string, got {name!r}")
    params = {"offset_mean": priors.offset_mean}
    for setting in priors.hyperparameters:
        params[setting] = numpyro.sample(f"{name}.{setting}", priors.distribution(setting))
    white = dist.Normal(0.0, 1.0)
    params["xi"] = numpyro.sample(f"{name}.xi", white.expand(grid.padded_shape).to_event(2))
    if priors.flexibility is not None:
        params["spectrum_xi"] = numpyro.sample(
            f"{name}.spectrum_xi", white.expand((priors.spectrum_rows(), grid.n_bins - 1)).to_event(2))
    log_sky, amplitude = _correlated_field_jit(params, grid)
    if record_amplitude is None:
        record_amplitude = grid.n_bins <= RECORD_MAX_BINS
    if record_amplitude:
        numpyro.deterministic(f"{name}.amplitude", amplitude)
    return log_sky
