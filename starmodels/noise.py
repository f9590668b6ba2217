"""Noise models: the likelihood of the pixel data given expected counts.

Each model checks its data before any sampling (``problems``), fills masked
pixels with a harmless value so they can hold NaN on input (``fill``), gives
the per-pixel distribution (``distribution``) and draws simulated data
(``simulate``). Units: counts (photons or electrons) per pixel for :class:`Poisson`,
:class:`Gaussian` and :class:`PoissonGaussian`; the error-map (:class:`ErrGaussian`), variable
(:class:`VariableGaussian`) and Student-t (:class:`StudentT`) models work in whatever unit the data
have (counts, electrons/s, Jy/pixel, ...), their parameters in that unit.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from starmodels.component import Component


class NoiseModel(Component):
    """Base class: a pixel likelihood with an optional boolean ``mask`` (True = use)."""

    mask: jnp.ndarray | None
    role = "noise"

    def _set_mask(self, mask):
        if mask is None:
            self.mask = None
            return
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(f"mask must be boolean (True = use the pixel), got dtype {m.dtype}")
        self.mask = jnp.asarray(m)

    def use(self, shape) -> np.ndarray:
        """Boolean map of used pixels for data of ``shape`` (an image mask applies to every image)."""
        return np.ones(shape, bool) if self.mask is None else np.broadcast_to(np.asarray(self.mask), shape)

    def problems(self, data: np.ndarray) -> list[str]:
        """Every problem with ``data`` under this model, as readable sentences."""
        out = []
        if self.mask is not None and self.mask.shape != data.shape[data.ndim - self.mask.ndim:]:
            out.append(f"mask shape {tuple(self.mask.shape)} != data shape {data.shape}")
            return out
        use = self.use(data.shape)
        bad = ~np.isfinite(data) & use
        if bad.any():
            out.append(f"{int(bad.sum())} non-finite (NaN/inf) pixel(s) outside the mask, "
                       f"first at {tuple(int(i) for i in np.argwhere(bad)[0])}")
        if not use.any():
            out.append("the mask excludes every pixel")
        return out + self._value_problems(data, use)

    def _value_problems(self, data: np.ndarray, use: np.ndarray) -> list[str]:
        """Model-specific checks of the used pixels (overridden by subclasses)."""
        return []

    def fill(self, data: np.ndarray) -> np.ndarray:
        """Data with masked pixels set to 0 (they carry no weight)."""
        return np.where(self.use(data.shape), data, 0.0)

    def observe(self, mu: jnp.ndarray, data, p: dict, event_ndim: int | None = None):
        """The numpyro likelihood site ``obs``: the last ``event_ndim`` axes (default all) are one event."""
        d = self.distribution(mu, p)
        if self.mask is not None:
            d = d.mask(self.mask)
        return numpyro.sample("obs", d.to_event(mu.ndim if event_ndim is None else event_ndim), obs=data)

    def log_prob(self, mu, data, p: dict | None = None) -> jnp.ndarray:
        """Per-pixel log-likelihood of ``data`` given expected counts ``mu`` (0 where masked); jittable."""
        p = {**self.fixed(), **(p or {})}
        data = jnp.asarray(data)
        if self.mask is not None:
            data = jnp.where(self.mask, data, 0.0)
        lp = self.distribution(mu, p).log_prob(data)
        return lp if self.mask is None else jnp.where(self.mask, lp, 0.0)

    def simulate(self, key, mu, p: dict | None = None) -> jnp.ndarray:
        """Noisy data (counts) drawn around expected counts ``mu`` with PRNG ``key``."""
        p = {**self.fixed(), **(p or {})}
        return self.distribution(mu, p).sample(key)


class Poisson(NoiseModel):
    """Photon counting: integer counts ~ Poisson(expected counts)."""

    param_names = ()

    def __init__(self, mask=None):
        super().__init__({})
        self._set_mask(mask)

    def _value_problems(self, data, use):
        out = []
        use = use & np.isfinite(data)
        if (data[use] < 0).any():
            out.append(f"Poisson noise needs non-negative counts; {int((data[use] < 0).sum())} "
                       f"pixel(s) are negative (min {data[use].min():g})")
        frac = data[use] != np.round(data[use])
        if frac.any():
            out.append(f"Poisson noise needs integer counts; {int(frac.sum())} pixel(s) are not "
                       "integers (data with read noise needs PoissonGaussian)")
        return out

    def distribution(self, mu, p):
        """Per-pixel Poisson distribution of counts with mean ``mu`` (counts)."""
        return PoissonCounts(jnp.clip(mu, 1e-10))


class PoissonCounts(dist.Poisson):
    """Poisson with a log-probability that stays accurate in float32 at high counts.

    The textbook ``k log(mu) - mu - lgamma(k + 1)`` cancels terms of order
    ``k log k`` (2e5 for the 2e4-photon sky of the VI lab), so its float32
    rounding noise (~0.01 per pixel, ~1 per image) swamps the energy changes
    HMC relies on. Written as ``k (log1p(x) - x) + [k log k - k - lgamma(k + 1)]``
    with ``x = (mu - k) / k``, the ``mu``-dependent part is small and exact to
    rounding; the bracket depends on the data only.
    """

    def log_prob(self, value):
        """Log-probability of counts ``value`` (float32-accurate at high counts; see the class)."""
        k, mu = value, self.rate
        pos = k > 0
        safe_k = jnp.where(pos, k, 1.0)
        x = (mu - safe_k) / safe_k
        varying = jnp.where(pos, safe_k * (jnp.log1p(x) - x), 0.0) - jnp.where(pos, 0.0, mu)
        const = jnp.where(pos, safe_k * jnp.log(safe_k) - safe_k, 0.0) - jax.scipy.special.gammaln(k + 1)
        return varying + const


class Gaussian(NoiseModel):
    """Gaussian noise with a known per-pixel sigma (scalar or map, counts)."""

    sigma: jnp.ndarray
    param_names = ()

    def __init__(self, sigma, mask=None):
        super().__init__({})
        self._set_mask(mask)
        try:
            arr = np.asarray(sigma, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"Gaussian noise: sigma must be a number or a map of numbers (counts), got "
                             f"{sigma!r}") from None
        self.sigma = jnp.asarray(arr)

    def _value_problems(self, data, use):
        out = []
        try:
            s = np.broadcast_to(np.asarray(self.sigma), data.shape)
        except ValueError:
            return [f"sigma shape {tuple(np.shape(self.sigma))} does not match data shape {data.shape}"]
        bad = ~(np.isfinite(s) & (s > 0)) & use
        if bad.any():
            out.append(f"sigma must be finite and positive; {int(bad.sum())} pixel(s) are not")
        return out

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sigma) (counts); masked pixels get sigma 1 (they carry no weight)."""
        sigma = self.sigma if self.mask is None else jnp.where(self.mask, self.sigma, 1.0)
        return dist.Normal(mu, sigma)


class PoissonGaussian(NoiseModel):
    """CCD noise: Poisson photons plus Gaussian read noise ``read_sigma`` (counts).

    Uses the standard CCD approximation ``Normal(mu, sqrt(mu + read_sigma**2))``,
    accurate when ``mu + read_sigma**2`` is more than about 10 counts.
    ``read_sigma`` may be fixed or given a prior (site ``noise.read_sigma``).
    """

    param_names = ("read_sigma",)

    def __init__(self, read_sigma, mask=None):
        super().__init__({"read_sigma": read_sigma})
        self._set_mask(mask)
        fixed = self.fixed().get("read_sigma")
        if fixed is not None and not float(fixed) > 0:
            raise ValueError(f"read_sigma must be positive, got {float(fixed)}")

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sqrt(mu + read_sigma^2)) (counts): the CCD approximation."""
        return dist.Normal(mu, jnp.sqrt(jnp.clip(mu, 0.0) + p["read_sigma"] ** 2))

    def simulate(self, key, mu, p: dict | None = None) -> jnp.ndarray:
        """Exact: Poisson photons plus Gaussian read noise (not the approximation)."""
        p = {**self.fixed(), **(p or {})}
        return simulate_poisson_read(key, mu, p["read_sigma"])


def simulate_poisson_read(key, mu, read_sigma) -> jnp.ndarray:
    """Exact CCD simulation: Poisson(mu) photons plus Normal(0, read_sigma) read noise."""
    k1, k2 = jax.random.split(key)
    return jax.random.poisson(k1, mu).astype(float) + read_sigma * jax.random.normal(k2, mu.shape)


# -- noise with a known error map or a signal-dependent variance ---------------------------------------


def _where(bad: np.ndarray) -> str:
    """The first position where ``bad`` is True, as ``(i, j)`` (array index order: row, col)."""
    return str(tuple(int(i) for i in np.argwhere(bad)[0]))


def _read_map(who: str, sigma, variance, name: str | None) -> tuple[np.ndarray, bool, str]:
    """The error map given as ``sigma=`` or ``variance=`` (exactly one): ``(array, is_variance, label)``."""
    given = [k for k, v in (("sigma", sigma), ("variance", variance)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"{who}: give exactly one of sigma= (standard deviation, data units) or variance= "
                         f"(data units squared); got {given or 'neither'}")
    value = sigma if sigma is not None else variance
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {given[0]} must be a number or a map of numbers, got "
                         f"{type(value).__name__}") from None
    label = name if name is not None else ("ERR" if sigma is not None else "VAR")
    return arr, variance is not None, label


def _map_problems(arr: np.ndarray, label: str, data_shape: tuple, use: np.ndarray,
                  masked: bool) -> list[str]:
    """Shape, zero, negative and non-finite values of an error map in the used pixels, as sentences."""
    try:
        a = np.broadcast_to(arr, data_shape)
    except ValueError:
        return [f"{label} shape {arr.shape} does not match data shape {tuple(data_shape)}"]
    where = " inside the mask" if masked else ""
    out = []
    finite = np.isfinite(a)
    for what, bad in (("non-finite (NaN/inf)", ~finite & use),
                      ("zero", finite & (a == 0) & use),
                      ("negative", finite & (a < 0) & use)):
        if bad.any():
            out.append(f"{label} has {int(bad.sum())} {what} pixel(s){where}, first at {_where(bad)}")
    return out


def _map_sigma(arr: jnp.ndarray, is_variance: bool) -> jnp.ndarray:
    """Standard deviation (data units) from an error map holding sigma or variance."""
    return jnp.sqrt(arr) if is_variance else arr


def _masked_sqrt(var: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
    """``sqrt(var)`` with 1 on masked pixels, chosen *before* the root so a NaN or 0 there cannot
    reach the gradient (the derivative of the root is never taken at a masked pixel)."""
    return jnp.sqrt(var if mask is None else jnp.where(mask, var, 1.0))


def _positive_problem(full: str, param, zero_ok: bool) -> str | None:
    """Why parameter ``full`` (a fixed value or a prior) is not a positive scalar, or None if it is."""
    if isinstance(param, dist.Distribution):
        shape = tuple(param.batch_shape) + tuple(param.event_shape)
        low = getattr(param.support, "lower_bound", None)
        if shape:
            return f"{full} takes a single value; its prior has shape {shape}"
        if low is None or not np.all(np.asarray(low) >= 0):
            return (f"{full} must be positive, but its {type(param).__name__} prior has support "
                    f"{param.support} (negative values allowed); use a prior on positive values "
                    "(LogNormal, HalfNormal, Gamma, or Uniform/TruncatedNormal with low >= 0)")
        return None
    arr = np.asarray(param)
    if arr.shape != ():
        return f"{full} takes a single number, got shape {arr.shape}"
    v = float(arr)
    if v > 0 or (zero_ok and v == 0):
        return None
    return f"{full} must be {'non-negative' if zero_ok else 'positive'}, got {v:g}"


class _PositiveParams(NoiseModel):
    """A noise model whose parameters are positive scalars, checked when built and when replaced."""

    def _zero_ok(self, name: str) -> bool:
        """Whether parameter ``name`` may be held fixed at exactly 0."""
        return False

    def _hint(self, name: str) -> str:
        """Why parameter ``name`` must be positive, appended to its error (empty by default)."""
        return ""

    def _check_params(self, params: dict) -> None:
        """Raise a ValueError listing every parameter that is not a positive scalar."""
        bad = [p + self._hint(k) for k in self.param_names
               if (p := _positive_problem(f"{self.role}.{k}", params[k], self._zero_ok(k))) is not None]
        if bad:
            raise ValueError(f"{type(self).__name__}: " + "; ".join(bad))

    def _rebuild(self, params: dict) -> NoiseModel:
        self._check_params(params)
        return super()._rebuild(params)


class ErrGaussian(NoiseModel):
    """Gaussian noise with a known per-pixel error map, e.g. a FITS ``ERR`` or variance extension.

    Give exactly one of ``sigma`` (standard deviation, data units, e.g. electrons/s or counts) or
    ``variance`` (data units squared). Unlike :class:`Gaussian`, :meth:`problems` names every zero,
    negative and non-finite value of the map among the used pixels with its count and first position;
    masked pixels may hold anything (NaN included). The map has the data's shape (or broadcasts to it,
    e.g. one map for every image of a plate). ``name`` labels the map in messages (default ``"ERR"``
    for ``sigma``, ``"VAR"`` for ``variance``). No parameters are sampled.
    """

    err: jnp.ndarray
    is_variance: bool = eqx.field(static=True)
    label: str = eqx.field(static=True)
    param_names = ()

    def __init__(self, sigma=None, *, variance=None, mask=None, name: str | None = None):
        super().__init__({})
        self._set_mask(mask)
        arr, self.is_variance, self.label = _read_map("ErrGaussian", sigma, variance, name)
        self.err = jnp.asarray(arr)

    @property
    def sigma(self) -> jnp.ndarray:
        """Per-pixel standard deviation (data units); NaN where a variance is negative."""
        return _map_sigma(self.err, self.is_variance)

    def _value_problems(self, data, use):
        return _map_problems(np.asarray(self.err), self.label, data.shape, use, self.mask is not None)

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sigma) (data units); masked pixels get sigma 1 (they carry no weight)."""
        var = self.err if self.is_variance else self.err**2
        return dist.Normal(mu, _masked_sqrt(var, self.mask))


class VariableGaussian(_PositiveParams):
    """AstroPrism-style variable-covariance noise: Gaussian with ``sigma^2 = b^2 + s * |mu|``.

    ``mu`` is the expected image (data units). ``b`` is a constant noise floor (background and read
    noise) in data units; ``s`` (data units) scales the signal-dependent term: with data in counts,
    ``s = 1`` is Poisson noise, and with data in electrons/s from an exposure of ``t`` seconds,
    ``s = 1 / t``. The covariance is diagonal, with a variance that varies with the model.

    Each parameter is a fixed number or a prior, like every component parameter; the sites are
    ``noise.b`` and ``noise.s``. They are positive by construction: a fixed ``b`` must be > 0 and a
    fixed ``s`` >= 0 (``s = 0`` is a constant sigma ``b``), and a prior must have support on
    non-negative values (LogNormal, HalfNormal, Gamma, Uniform with ``low >= 0``, ...); this is
    checked again when a prior or value is replaced (``with_priors``, ``with_fixed``).
    """

    param_names = ("b", "s")

    def __init__(self, b, s, mask=None):
        super().__init__({"b": b, "s": s})
        self._set_mask(mask)
        self._check_params(self.params)

    def _zero_ok(self, name):
        return name == "s"

    def scale(self, mu, p) -> jnp.ndarray:
        """Per-pixel standard deviation ``sqrt(b^2 + s |mu|)`` (data units); 1 on masked pixels."""
        return _masked_sqrt(p["b"] ** 2 + p["s"] * jnp.abs(mu), self.mask)

    def distribution(self, mu, p):
        """Per-pixel Normal(mu, sqrt(b^2 + s |mu|)) (data units)."""
        return dist.Normal(mu, self.scale(mu, p))


class StudentT(_PositiveParams):
    """Student-t pixel noise, robust to outliers (cosmic rays, hot pixels, unmodelled sources).

    The data are ``mu + scale * t_df`` with ``t_df`` a standard Student-t variable of ``df`` degrees of
    freedom, and one scale formula covers the known-map and the variable cases::

        scale^2 = ERR^2 + b^2 + s * |mu|

    ``ERR`` is an optional known error map (``sigma=``, data units, or ``variance=``, data units
    squared; at most one), ``b`` (data units) and ``s`` (data units) are as in :class:`VariableGaussian`
    and default to 0. So ``StudentT(df, sigma=err)`` is the heavy-tailed :class:`ErrGaussian`,
    ``StudentT(df, b=..., s=...)`` the heavy-tailed :class:`VariableGaussian`, and both together add a
    floor in quadrature to a known map. ``scale`` is not the standard deviation: the variance is
    ``scale^2 * df / (df - 2)`` for ``df > 2`` and infinite otherwise; as ``df`` grows the model
    becomes the Gaussian with sigma ``scale``.

    ``df``, ``b`` and ``s`` are fixed numbers or priors (sites ``noise.df``, ``noise.b``,
    ``noise.s``), positive by construction as in :class:`VariableGaussian`: a fixed ``df`` must be
    > 0, ``s`` >= 0, and ``b`` >= 0 with an error map or > 0 without one (so the scale is never 0);
    priors need support on non-negative values (e.g. ``Gamma(2, 0.1)`` for ``df``).
    """

    err: jnp.ndarray | None
    is_variance: bool = eqx.field(static=True)
    label: str = eqx.field(static=True)
    param_names = ("df", "b", "s")

    def __init__(self, df, *, sigma=None, variance=None, b=0.0, s=0.0, mask=None, name: str | None = None):
        super().__init__({"df": df, "b": b, "s": s})
        self._set_mask(mask)
        if sigma is None and variance is None:
            self.err, self.is_variance, self.label = None, False, "ERR"
        else:
            arr, self.is_variance, self.label = _read_map("StudentT", sigma, variance, name)
            self.err = jnp.asarray(arr)
        self._check_params(self.params)

    def _zero_ok(self, name):
        return name == "s" or (name == "b" and self.err is not None)

    def _hint(self, name):
        if name == "b" and self.err is None:
            return " (without a sigma= or variance= map, b is the floor that keeps the scale above 0)"
        return ""

    def _value_problems(self, data, use):
        if self.err is None:
            return []
        return _map_problems(np.asarray(self.err), self.label, data.shape, use, self.mask is not None)

    def scale(self, mu, p) -> jnp.ndarray:
        """Per-pixel scale ``sqrt(ERR^2 + b^2 + s |mu|)`` (data units); 1 on masked pixels."""
        var = p["b"] ** 2 + p["s"] * jnp.abs(mu)
        if self.err is not None:
            var = var + (self.err if self.is_variance else self.err**2)
        return _masked_sqrt(var, self.mask)

    def distribution(self, mu, p):
        """Per-pixel StudentT(df, loc=mu, scale) (data units)."""
        return dist.StudentT(p["df"], mu, self.scale(mu, p))
