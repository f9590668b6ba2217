"""A scene (the sky on a pixel grid with a WCS) seen by channels, as one NumPyro program.

Data flow is strictly one way::

    latent log-normal fields s_j (scene grid)                     -> sky.* / sky.f<j>.* sites
    sky_c  = amplitude_c * sum_j w_cj exp(s_j)   (flux per scene pixel, in channel c's flux unit)
    mu_c   = PSF_c * PixelMap_c(sky_c) + background_c             (flux per channel pixel)
    data_c ~ noise model of channel c on its fit pixels            -> channel.<name>.image

Pieces
------
* :class:`Scene`: the field grid (:class:`~starmodels.sky.correlated_field.FieldGrid`, its data region is
  the scene), the scene's celestial WCS, the number ``K`` of latent fields and their priors.
  :meth:`Scene.covering` builds a TAN grid covering a set of channels.
* :class:`ChannelModel`: everything about one channel built once on the host (reprojection, PSF
  convolver, fit / held-out masks, noise model, priors). Its device arrays (:meth:`ChannelModel.arrays`,
  collected by :func:`model_arrays`) are *arguments* of the jitted programs, never closure constants.
* :func:`scene_model`: the NumPyro program. :func:`fit_svi`: mean-field SVI. :func:`reduced_chi2`.

Sites (``<c>`` = channel name)
------------------------------
``sky.<hyper>``, ``sky.xi``, ``sky.spectrum_xi`` (K = 1) or ``sky.f0.*``, ``sky.f1.*``, ... (K > 1);
``channel.<c>.mixing`` (K > 1 only, Dirichlet(1) on the simplex of K weights);
``channel.<c>.amplitude`` (every channel except the first, the reference, whose amplitude is 1);
``channel.<c>.background``; ``channel.<c>.noise.b``, ``channel.<c>.noise.s`` (channels without a sigma
map); the observed ``channel.<c>.image``. Deterministic: only the fields' amplitude spectra
(``sky[.f<j>].amplitude``), no per-pixel array.

Identifiability
---------------
``sky_c = A_c sum_j w_cj F_j`` with ``F_j = exp(s_j)``. Fixing the reference channel's amplitude to 1
ties the overall flux scale to the reference channel's unit, and the simplex removes the trade-off
between ``A_c`` and the sum of the weights. With K = 1 the model is then identifiable. With K > 1 it is
identifiable up to a permutation of the fields *and*, strictly, up to a rescaling of the fields
``F_j -> lambda_j F_j`` with ``sum_j w_ref,j / lambda_j = 1`` (K - 1 directions, compensated by the
weights and amplitudes); those directions are fixed only by the fields' priors (``offset_mean``,
``offset_std``), not by the data. Summaries of individual fields with K > 1 should therefore be read
with care; the channel skies ``sky_c`` are identified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.initialization import init_to_median

from starmodels.noise import ErrGaussian, NoiseModel, VariableGaussian
from starmodels.sky.channel import ChannelData
from starmodels.sky.checks import is_int, is_number
from starmodels.sky.convolve import FFTConvolver
from starmodels.sky.correlated_field import FieldGrid, FieldPriors, lognormal, sample_correlated_field
from starmodels.sky.masks import holdout_split
from starmodels.sky.noise_estimate import estimate_sigma
from starmodels.sky.reproject import PixelMap, apply, celestial_wcs, pixel_area_arcsec2

#: Prior standard deviation of ``ln amplitude`` of the non-reference channels (a factor e^1.5 ~ 4.5).
AMPLITUDE_LOG_STD = 1.5

_MAD = 1.4826


# ----------------------------------------------------------------------------------------------------
# scene
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Scene:
    """What is in the sky: ``n_fields`` latent log-normal fields on a pixel grid with a celestial WCS.

    Attributes
    ----------
    grid:
        The fields' :class:`FieldGrid`; its data region ``grid.shape`` is the scene ``(H, W)`` and
        ``grid.distance`` should be the scene pixel scale in arcsec (it only sets the units of ``k``).
    wcs:
        Celestial astropy WCS of the data region (pixel ``[i, j]`` centred at ``(x, y) = (j, i)``).
    n_fields:
        ``K >= 1`` latent fields, mixed per channel (see the module docstring).
    priors:
        :class:`FieldPriors` shared by the K fields. ``offset_mean`` is the log of a typical sky level in
        flux per scene pixel, in the reference (first) channel's flux unit.
    """

    grid: FieldGrid
    wcs: WCS
    n_fields: int = 1
    priors: FieldPriors = field(default_factory=FieldPriors)

    def __post_init__(self):
        if not isinstance(self.grid, FieldGrid):
            raise ValueError(f"Scene grid must be a FieldGrid, got {type(self.grid).__name__}")
        object.__setattr__(self, "wcs", celestial_wcs("Scene wcs", self.wcs))
        if not is_int(self.n_fields) or self.n_fields < 1:
            raise ValueError(f"Scene n_fields must be an integer >= 1, got {self.n_fields!r}")
        object.__setattr__(self, "n_fields", int(self.n_fields))
        if not isinstance(self.priors, FieldPriors):
            raise ValueError(f"Scene priors must be FieldPriors, got {type(self.priors).__name__}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` scene pixels."""
        return self.grid.shape

    @property
    def field_names(self) -> tuple[str, ...]:
        """Site prefixes of the latent fields: ``("sky",)`` or ``("sky.f0", "sky.f1", ...)``."""
        return ("sky",) if self.n_fields == 1 else tuple(f"sky.f{j}" for j in range(self.n_fields))

    @classmethod
    def covering(cls, channels: Sequence[ChannelData], pixel_scale: float | None = None, pad: float = 2.0,
                 priors: FieldPriors | None = None, n_fields: int = 1) -> Scene:
        """A scene on a north-up TAN grid covering the union of the channels' footprints.

        The grid is centred on the mean direction of the footprints' corners and edges, with square
        pixels of ``pixel_scale`` arcsec (default: the finest channel's ``pixel_scale``). It extends beyond
        the footprints by the largest PSF half-width (``psf.shape // 2`` channel pixels, in arcsec) plus
        one scene pixel, so flux the PSF spreads into a channel from outside it is modelled. ``pad`` is
        the :class:`FieldGrid` padding factor. ``priors=None``: :class:`FieldPriors` defaults with
        ``offset_mean = ln(level)``, ``level`` a rough typical flux per scene pixel of the reference
        (first) channel: a quarter of the 5-95 percentile range of its used pixels, scaled by the ratio
        of pixel areas (or the median sigma, or 1, when that is not positive).
        """
        channels = _channel_list(channels)
        if not is_int(n_fields) or n_fields < 1:
            raise ValueError(f"n_fields must be an integer >= 1, got {n_fields!r}")
        if pixel_scale is None:
            pixel_scale = min(c.pixel_scale for c in channels)
        if not is_number(pixel_scale) or not (math.isfinite(pixel_scale) and pixel_scale > 0):
            raise ValueError(f"pixel_scale must be a finite number > 0 (arcsec), got {pixel_scale!r}")
        pixel_scale = float(pixel_scale)
        points = []
        margin = 0.0
        for c in channels:
            h, w = c.shape
            t = np.linspace(0.0, 1.0, 9)
            xs = np.concatenate([t * w, np.full(9, w), t * w, np.zeros(9)]) - 0.5
            ys = np.concatenate([np.zeros(9), t * h, np.full(9, h), t * h]) - 0.5
            points.append(c.wcs.pixel_to_world(xs, ys).icrs)
            if c.psf is not None:
                margin = max(margin, max(c.psf.shape) // 2 * c.pixel_scale)
        ra = np.concatenate([p.ra.deg for p in points])
        dec = np.concatenate([p.dec.deg for p in points])
        vec = SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs").cartesian.xyz.value.mean(axis=1)
        centre = SkyCoord(x=vec[0], y=vec[1], z=vec[2], representation_type="cartesian", frame="icrs")
        centre = centre.represent_as("unitspherical")
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        wcs.wcs.crval = [centre.lon.deg, centre.lat.deg]
        wcs.wcs.crpix = [1.0, 1.0]
        d = pixel_scale / 3600.0
        wcs.wcs.cd = [[-d, 0.0], [0.0, d]]
        x, y = wcs.world_to_pixel(SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs"))
        extra = margin / pixel_scale + 1.0
        x0, x1 = float(np.min(x)) - extra, float(np.max(x)) + extra
        y0, y1 = float(np.min(y)) - extra, float(np.max(y)) + extra
        shape = (max(2, math.ceil(y1 - y0)), max(2, math.ceil(x1 - x0)))
        wcs.wcs.crpix = [1.0 - x0 - 0.5, 1.0 - y0 - 0.5]
        if priors is None:
            priors = FieldPriors(offset_mean=math.log(_typical_level(channels[0], pixel_scale)))
        return cls(FieldGrid(shape, pad=pad, distance=pixel_scale), wcs, int(n_fields), priors)


def _typical_level(channel: ChannelData, pixel_scale: float) -> float:
    values = channel.image[channel.mask & np.isfinite(channel.image)]
    level = 0.0
    if values.size:
        p5, p95 = np.percentile(values, [5, 95])
        level = 0.25 * (p95 - p5) * (pixel_scale / channel.pixel_scale) ** 2
    if not (np.isfinite(level) and level > 0) and channel.sigma is not None:
        level = float(np.nanmedian(channel.sigma[channel.mask]))
    return level if np.isfinite(level) and level > 0 else 1.0


def _channel_list(channels) -> list[ChannelData]:
    if isinstance(channels, ChannelData):
        channels = [channels]
    channels = list(channels)
    if len(channels) < 1:
        raise ValueError("a scene needs at least 1 channel, got none")
    bad = [type(c).__name__ for c in channels if not isinstance(c, ChannelData)]
    if bad:
        raise ValueError(f"channels must be ChannelData, got {bad}")
    names = [c.name for c in channels]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"channel names must be unique, got duplicates {dups}")
    return channels


# ----------------------------------------------------------------------------------------------------
# channel response
# ----------------------------------------------------------------------------------------------------

def _shifted_wcs(wcs: WCS, dx: int, dy: int) -> WCS:
    """The WCS of a grid extended by ``dx`` columns and ``dy`` rows on each side (SIP followed)."""
    out = wcs.deepcopy()
    out.wcs.crpix = np.asarray(out.wcs.crpix) + np.array([dx, dy], dtype=float)
    if out.sip is not None:
        s = out.sip
        out.sip = Sip(s.a, s.b, s.ap, s.bp, np.asarray(s.crpix) + np.array([dx, dy], dtype=float))
    return out


def _robust_sigma(values: np.ndarray) -> float:
    return float(_MAD * np.median(np.abs(values - np.median(values))))


@dataclass(frozen=True, eq=False)
class ChannelModel:
    """One channel's response to the scene and its noise, built once on the host by :meth:`build`.

    The scene is reprojected (:class:`PixelMap`) onto the channel grid extended by the PSF half-width on
    each side, convolved with the PSF there (:class:`FFTConvolver`) and cropped, so flux from just
    outside the channel is spread in correctly. Without a PSF there is no convolution.

    Attributes
    ----------
    data:
        The :class:`ChannelData`.
    reference:
        True for the first channel of a scene: its amplitude is fixed to 1.
    pixel_map:
        Scene -> (extended) channel grid.
    border:
        ``(rows, cols)`` added on each side of the channel grid before convolution (PSF half-widths).
    convolver:
        :class:`FFTConvolver` on the extended grid, or None without a PSF.
    fit, held:
        Disjoint boolean ``(H, W)`` masks (True = use): ``fit | held`` is the channel mask restricted to
        pixels fully covered by the scene; ``held`` is empty when ``holdout == 0``.
    noise:
        :class:`ErrGaussian` (sigma map known; no sites) or :class:`VariableGaussian` with priors:
        ``b ~ LogNormal`` with mean and std ``(sigma_hat, sigma_hat / 2)``, ``sigma_hat`` the robust
        background noise of the image (:func:`estimate_sigma`; the MAD of the used pixels if that fails);
        ``s ~ HalfCauchy(sigma_hat^2 / L)``, ``L`` the 99th percentile of ``|image - median|``: the
        signal-dependent variance at bright pixels is a priori comparable to the floor variance, with a
        heavy tail for Poisson-dominated data and mass near 0 for a constant sigma. Built without a mask
        (masking is done by the program with the fit mask passed as an argument).
    background_prior:
        ``(loc, scale)`` of the Normal prior of the background (data units): the median of the used
        pixels, and the larger of their 5-95 percentile range and 3 times their median noise sigma, so
        anything from "all background" to "no background" is within about one standard deviation.
    amplitude_prior:
        ``(mu, sigma)`` of the LogNormal prior of the amplitude, or None for the reference channel:
        ``mu = ln`` of the ratio of this channel's 5-95 percentile range per arcsec^2 to the reference
        channel's (1 if undefined), ``sigma =`` :data:`AMPLITUDE_LOG_STD`.
    """

    data: ChannelData
    reference: bool
    pixel_map: PixelMap
    border: tuple[int, int]
    convolver: FFTConvolver | None
    fit: np.ndarray
    held: np.ndarray
    noise: NoiseModel
    background_prior: tuple[float, float]
    amplitude_prior: tuple[float, float] | None

    @property
    def name(self) -> str:
        return self.data.name

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    @classmethod
    def build(cls, data: ChannelData, scene: Scene, *, reference: ChannelData | None = None,
              holdout: float = 0.0, seed=0, block: int = 1) -> ChannelModel:
        """Build the channel's response to ``scene``.

        ``reference``: the scene's reference channel (None: this channel is the reference). ``holdout``:
        fraction of the usable pixels held out (0 <= holdout < 1) with :func:`holdout_split` (``seed``,
        ``block``). Raises a ValueError naming the channel when it does not overlap the scene or no
        usable pixel is left.
        """
        if not isinstance(data, ChannelData):
            raise ValueError(f"channel must be ChannelData, got {type(data).__name__}")
        if not isinstance(scene, Scene):
            raise ValueError(f"scene must be a Scene, got {type(scene).__name__}")
        if not is_number(holdout) or not 0 <= holdout < 1:
            raise ValueError(f"holdout must be a number in [0, 1), got {holdout!r}")
        who = f"channel {data.name!r}"
        h, w = data.shape
        by, bx = (0, 0) if data.psf is None else (data.psf.shape[0] // 2, data.psf.shape[1] // 2)
        ext_shape = (h + 2 * by, w + 2 * bx)
        try:
            pm = PixelMap.build(scene.wcs, scene.shape, _shifted_wcs(data.wcs, bx, by), ext_shape)
        except ValueError as err:
            raise ValueError(f"{who} does not overlap the scene: {err}") from None
        covered = pm.coverage[by:by + h, bx:bx + w] >= 1.0 - 1e-9
        if not covered.any():
            raise ValueError(f"{who} does not overlap the scene: none of its pixels is fully inside the "
                             f"scene {scene.shape}")
        use = data.mask & covered
        if not use.any():
            raise ValueError(f"{who}: the mask hides every pixel inside the scene (no usable pixel: all are "
                             "masked or outside the scene)")
        sigma_map = np.ones(data.shape) if data.sigma is None else data.sigma
        problems = ErrGaussian(sigma=sigma_map, mask=use, name="sigma").problems(data.image)
        if problems:
            raise ValueError(f"{who}: " + "; ".join(problems))
        if holdout > 0:
            fit, held = holdout_split(use, float(holdout), seed, block)
        else:
            fit, held = use, np.zeros_like(use)
        conv = None if data.psf is None else FFTConvolver.build(data.psf, ext_shape)

        values = data.image[use]
        med = float(np.median(values))
        p5, p95 = np.percentile(values, [5, 95])
        sigma_hat = _noise_level(data, use)
        if data.sigma is not None:
            noise = ErrGaussian(sigma=np.where(use, data.sigma, 1.0))
            noise_sigma = float(np.median(data.sigma[use]))
        else:
            big = float(np.percentile(np.abs(values - med), 99))
            s_scale = sigma_hat**2 / big if big > 0 else 1.0
            noise = VariableGaussian(b=lognormal(sigma_hat, 0.5 * sigma_hat), s=dist.HalfCauchy(s_scale))
            noise_sigma = sigma_hat
        bg_scale = max(float(p95 - p5), 3.0 * noise_sigma)
        if not bg_scale > 0:
            bg_scale = 1.0
        amp = None
        if reference is not None:
            num, den = _spread_per_area(data), _spread_per_area(reference)
            ratio = num / den if den > 0 else float("nan")
            amp = (math.log(ratio) if np.isfinite(ratio) and ratio > 0 else 0.0, AMPLITUDE_LOG_STD)
        return cls(data, reference is None, pm, (by, bx), conv, fit, held, noise, (med, bg_scale), amp)

    def arrays(self) -> dict[str, jax.Array]:
        """Device arrays of the channel, to pass to the jitted program: gather ``index``/``weight``,
        ``kernel_ft`` (with a PSF), ``image`` (0 at unusable pixels), boolean ``fit`` and ``held``, and
        ``sigma`` (1 at unusable pixels) for a known noise map."""
        out = dict(self.pixel_map.arrays())
        if self.convolver is not None:
            out["kernel_ft"] = self.convolver.kernel_ft
        use = self.fit | self.held
        out["image"] = jnp.asarray(np.where(use, self.data.image, 0.0), dtype=jnp.float32)
        out["fit"] = jnp.asarray(self.fit)
        out["held"] = jnp.asarray(self.held)
        if isinstance(self.noise, ErrGaussian):
            out["sigma"] = jnp.asarray(np.where(use, self.data.sigma, 1.0), dtype=jnp.float32)
        return out

    def response(self, sky, arrays):
        """``PSF * PixelMap(sky)`` on the channel grid (flux per channel pixel), without background."""
        by, bx = self.border
        img = apply(sky, arrays["index"], arrays["weight"], self.pixel_map.channel_shape)
        if self.convolver is not None:
            img = self.convolver(img, kernel_ft=arrays["kernel_ft"])
        h, w = self.shape
        return img[..., by:by + h, bx:bx + w]

    def noise_distribution(self, mu, params, arrays):
        """Per-pixel Normal of the data given ``mu`` and the noise parameters (no masking)."""
        noise = self.noise
        if isinstance(noise, ErrGaussian):
            noise = eqx.tree_at(lambda n: n.err, noise, arrays["sigma"])
        return noise.distribution(mu, {**noise.fixed(), **params})


@partial(jax.jit, static_argnums=0)
def _response(channel: ChannelModel, sky, arrays):
    """:meth:`ChannelModel.response`, jitted (the channel is static, hashed by identity) so the program
    also runs fast outside a jit (SVI's guide set-up traces it eagerly)."""
    return channel.response(sky, arrays)


def _noise_level(data: ChannelData, use: np.ndarray) -> float:
    try:
        s = float(estimate_sigma(data.image, use))
    except ValueError:
        s = float("nan")
    if not (np.isfinite(s) and s > 0):
        s = _robust_sigma(data.image[use])
    if not (np.isfinite(s) and s > 0):
        s = float(np.std(data.image[use]))
    return s if np.isfinite(s) and s > 0 else 1.0


def _spread_per_area(data: ChannelData) -> float:
    values = data.image[data.mask & np.isfinite(data.image)]
    p5, p95 = np.percentile(values, [5, 95])
    return float(p95 - p5) / pixel_area_arcsec2(data.wcs)


def build_channels(scene: Scene, channels: Sequence[ChannelData], *, holdout: float = 0.0, seed=0,
                   block: int = 1) -> list[ChannelModel]:
    """:class:`ChannelModel` of every channel (the first is the reference), each with its own hold-out
    split drawn from ``seed`` (channel ``i`` uses the seed sequence ``(seed, i)``)."""
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a Scene, got {type(scene).__name__}")
    channels = _channel_list(channels)
    ref = channels[0]
    return [ChannelModel.build(c, scene, reference=None if i == 0 else ref, holdout=holdout,
                               seed=np.random.SeedSequence([int(seed), i]) if is_int(seed) else seed,
                               block=block)
            for i, c in enumerate(channels)]


def model_arrays(channels: Sequence[ChannelModel]) -> dict[str, dict[str, jax.Array]]:
    """``{channel name: ChannelModel.arrays()}``: the pytree argument of :func:`scene_model`."""
    return {c.name: c.arrays() for c in channels}


# ----------------------------------------------------------------------------------------------------
# the program
# ----------------------------------------------------------------------------------------------------

def _check_models(scene, channels):
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a Scene, got {type(scene).__name__}")
    channels = list(channels)
    if len(channels) < 1:
        raise ValueError("a scene needs at least 1 channel, got none")
    if not all(isinstance(c, ChannelModel) for c in channels):
        raise ValueError("channels must be ChannelModel (see build_channels)")
    if not channels[0].reference or any(c.reference for c in channels[1:]):
        raise ValueError("the first channel, and only it, must be the reference (see build_channels)")
    return channels


def scene_model(scene: Scene, channels: Sequence[ChannelModel], arrays, observe: bool = True):
    """NumPyro program of a scene seen by channels (sites and identifiability: see the module docstring).

    The reference channel (the first) has its amplitude fixed to 1 (no ``amplitude`` site); together with
    the Dirichlet(1) mixing weights on the simplex (``channel.<c>.mixing``, only when K > 1) this fixes the
    flux scale, leaving the model identifiable up to a permutation of the fields (and, for K > 1, the
    prior-constrained field rescalings described in the module docstring). Noise parameters are sampled
    from the channel noise model's Component priors (``noise.priors()``) under the names
    ``channel.<c>.noise.<param>``; the likelihood uses ``NoiseModel.distribution`` masked by the fit mask.

    Parameters
    ----------
    scene, channels:
        A :class:`Scene` and its :class:`ChannelModel` list (static Python objects).
    arrays:
        :func:`model_arrays` of the channels (a pytree of device arrays, jit argument).
    observe:
        Condition ``channel.<c>.image`` on the data (False: draw it, e.g. to simulate).

    Returns
    -------
    ``{channel name: {"sky": sky_c (scene grid), "mu": mu_c, "sigma": sigma_c (channel grid)}}``.
    """
    k = scene.n_fields
    fields = jnp.stack([jnp.exp(sample_correlated_field(scene.grid, scene.priors, n))
                        for n in scene.field_names])
    out = {}
    for ch in channels:
        a = arrays[ch.name]
        prefix = f"channel.{ch.name}"
        if k > 1:
            w = numpyro.sample(f"{prefix}.mixing", dist.Dirichlet(jnp.ones(k)))
            sky = jnp.tensordot(w, fields, axes=1)
        else:
            sky = fields[0]
        if not ch.reference:
            sky = numpyro.sample(f"{prefix}.amplitude", dist.LogNormal(*ch.amplitude_prior)) * sky
        background = numpyro.sample(f"{prefix}.background", dist.Normal(*ch.background_prior))
        mu = _response(ch, sky, a) + background
        params = {n: numpyro.sample(f"{prefix}.noise.{n}", prior) for n, prior in ch.noise.priors().items()}
        d = ch.noise_distribution(mu, params, a)
        numpyro.sample(f"{prefix}.image", d.mask(a["fit"]).to_event(2), obs=a["image"] if observe else None)
        out[ch.name] = {"sky": sky, "mu": mu, "sigma": d.scale}
    return out


def _latent_names(scene, channels, arrays) -> list[str]:
    tr = handlers.trace(handlers.seed(scene_model, 0)).get_trace(scene, channels, arrays)
    return [n for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]]


def _predict(scene, channels, arrays, params):
    return handlers.substitute(handlers.seed(scene_model, 0), data=params)(scene, channels, arrays)


# ----------------------------------------------------------------------------------------------------
# inference and checks
# ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class SceneFit:
    """Result of :func:`fit_svi`.

    Attributes:
        params: the guide's median of every latent site (numpy arrays, constrained space).
        losses: ``(steps,)`` ELBO loss (negative ELBO, nats) of every step.
        sky: ``{channel name: (H, W)}`` posterior mean of ``sky_c`` (flux per scene pixel) over
            ``n_draws`` guide draws.
        guide_params: the optimised AutoNormal parameters (``<site>_auto_loc`` / ``_auto_scale``).
    """

    params: dict
    losses: np.ndarray
    sky: dict
    guide_params: dict


def fit_svi(scene: Scene, channels: Sequence[ChannelModel], *, steps: int, seed: int,
            learning_rate: float = 0.01, chunk: int = 500, n_draws: int = 16) -> SceneFit:
    """Fit the scene by SVI with a mean-field :class:`AutoNormal` guide (every latent: excitations and
    hyperparameters), Adam at ``learning_rate``, started at the prior medians, ``chunk`` steps per jitted
    ``lax.scan``. Reproducible: the same ``seed`` gives the same numbers."""
    channels = _check_models(scene, channels)
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    if not is_number(learning_rate) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}")
    if not is_int(n_draws) or n_draws < 1:
        raise ValueError(f"n_draws must be an integer >= 1, got {n_draws!r}")
    arrays = model_arrays(channels)
    model = partial(scene_model, scene, channels)
    guide = AutoNormal(model, init_loc_fn=init_to_median(num_samples=15))
    svi = SVI(model, guide, numpyro.optim.Adam(float(learning_rate)), Trace_ELBO())
    key_init, key_draw = jax.random.split(jax.random.PRNGKey(int(seed)))
    state = svi.init(key_init, arrays)

    @partial(jax.jit, static_argnums=2)
    def run(state, arrays, n):
        return jax.lax.scan(lambda s, _: svi.update(s, arrays), state, None, length=n)

    losses = []
    done = 0
    while done < steps:
        n = min(int(chunk), steps - done)
        state, loss = run(state, arrays, n)
        losses.append(np.asarray(loss))
        done += n
    guide_params = svi.get_params(state)

    @jax.jit
    def mean_sky(guide_params, arrays, key):
        draws = guide.sample_posterior(key, guide_params, sample_shape=(n_draws,))
        skies = jax.vmap(lambda p: {c: v["sky"] for c, v in _predict(scene, channels, arrays, p).items()})(
            draws)
        return jax.tree_util.tree_map(lambda x: x.mean(0), skies)

    median = {k: np.asarray(v) for k, v in guide.median(guide_params).items()}
    sky = {k: np.asarray(v) for k, v in mean_sky(guide_params, arrays, key_draw).items()}
    return SceneFit(median, np.concatenate(losses), sky, {k: np.asarray(v) for k, v in guide_params.items()})


def reduced_chi2(scene: Scene, channels: Sequence[ChannelModel], params: dict, which: str = "fit"
                 ) -> dict[str, float]:
    """Per-channel mean over the ``which`` (``"fit"`` or ``"held"``) pixels of ``((data - mu) / sigma)^2``,
    ``mu`` and ``sigma`` from the model at ``params`` (a value for every latent site, e.g.
    ``SceneFit.params``). NaN for a channel without such pixels."""
    channels = _check_models(scene, channels)
    if which not in ("fit", "held"):
        raise ValueError(f"which must be 'fit' or 'held', got {which!r}")
    arrays = model_arrays(channels)
    missing = sorted(set(_latent_names(scene, channels, arrays)) - set(params))
    if missing:
        raise ValueError(f"params is missing the latent site(s) {missing}")

    @jax.jit
    def chi2(params, arrays):
        out = _predict(scene, channels, arrays, params)
        res = {}
        for c in channels:
            a, o = arrays[c.name], out[c.name]
            z2 = ((a["image"] - o["mu"]) / o["sigma"]) ** 2
            m = a[which]
            res[c.name] = jnp.sum(jnp.where(m, z2, 0.0)) / jnp.sum(m)
        return res

    params = {k: jnp.asarray(v) for k, v in params.items()}
    return {k: float(v) for k, v in chi2(params, arrays).items()}
