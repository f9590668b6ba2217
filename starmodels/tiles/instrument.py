"""What the simulator takes from a real field: PSF profiles, band offsets, background range, noise.

Everything here is read off the field's own data products (frame sky, psField PSF and calibration,
WCS), never off a truth catalog:

* PSF: the SDSS profile (:mod:`starmodels.tiles.psf`) fitted to each band's PSF stamp, then sampled
  ``oversample`` times finer than the pixels;
* band offsets: the WCS-derived sub-pixel offsets of each band's cutout;
* sky: the frame's sky model, within ``sky_tolerance`` (fraction) either way;
* unresolved light of stars below the catalog's limit: a first range from none up to ``faint_factor``
  times the largest excess of the field's background estimate (the same estimator the encoder is
  given, :func:`~starmodels.tiles.simulate.estimate_background`) over the frame's sky, then
  :func:`calibrate_faint_light` narrows it so that simulated fields reproduce the field's excess;
* read variance: the frame's dark variance (electrons²);
* colour prior: the natural-log ratio of each band's sky-subtracted light to the reference band's,
  which for a crowded field is the mean colour of its stars.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from starmodels.tiles.psf import PowerLawPSF, fine_kernel, fit_profile
from starmodels.tiles.simulate import SimulatorConfig, estimate_background


def fit_psf_profiles(psf_images: np.ndarray, starts=None) -> tuple[list[PowerLawPSF], list[dict]]:
    """Fit the SDSS profile to each (S, S) PSF stamp of a (B, S, S) stack; returns profiles and fit info."""
    profiles, infos = [], []
    for b, img in enumerate(np.asarray(psf_images, float)):
        p, info = fit_profile(img, None if starts is None else starts[b])
        profiles.append(p)
        infos.append(info)
    return profiles, infos


def kernels(profiles, size: int, oversample: int) -> np.ndarray:
    """(B, n, n) fine kernels of the profiles (``n = size * oversample``, made odd), each summing to 1."""
    return np.stack([np.asarray(fine_kernel(jnp.asarray(p.array()), size, oversample)) for p in profiles])


def colour_from_light(image: np.ndarray, sky: np.ndarray) -> list[float]:
    """Natural-log ratio of each band's sky-subtracted total light to band 0's (one value per band after
    the first)."""
    light = np.clip((np.asarray(image, float) - np.asarray(sky, float)).sum(axis=(1, 2)), 1e-9, None)
    return [float(np.log(light[b] / light[0])) for b in range(1, len(light))]


def simulator_config(field, *, oversample: int = 2, psf_size: int = 25, sky_tolerance: float = 0.05,
                     faint_factor: float = 1.5, faint_flux_min: float = 50.0, profiles=None,
                     border_tiles: int = 6, max_gradient: float = 0.1) -> tuple[SimulatorConfig, dict]:
    """Simulator settings from a :class:`~starmodels.tiles.field.Field`; also returns what was measured.

    Args:
        field: the real cutout; oversample: fine PSF cells per pixel; psf_size: PSF side (pixels);
        sky_tolerance: relative range of the simulated sky around the frame's;
        faint_factor: top of the unresolved-light range as a multiple of the field's largest
            background excess over the sky (reference band); faint_flux_min: faintest unresolved
            star, electrons; profiles: PSF profiles to use instead of fitting the field's stamps.
    """
    if profiles is None:
        profiles, infos = fit_psf_profiles(field.psf)
    else:
        infos = [{} for _ in profiles]
    sky = np.asarray(field.sky, float).mean(axis=(1, 2))
    est = np.asarray(estimate_background(jnp.asarray(field.image)))
    excess = float(np.max(est[0] - np.asarray(field.sky[0])))
    cfg = SimulatorConfig(psf=kernels(profiles, psf_size, oversample), oversample=oversample,
                          band_offsets=np.asarray(field.band_offsets, float),
                          background_lo=sky * (1 - sky_tolerance), background_hi=sky * (1 + sky_tolerance),
                          read_variance=np.asarray(field.dark_variance, float), max_gradient=max_gradient,
                          border_tiles=border_tiles, faint_flux_min=faint_flux_min, faint_light_lo=0.0,
                          faint_light_hi=faint_factor * max(excess, 0.0))
    return cfg, {"profiles": profiles, "psf_size": psf_size, "psf_fit": infos,
                 "sky_mean": sky.tolist(), "background_excess_max": excess,
                 "colour_mean": colour_from_light(field.image, field.sky)}


def config_to_dict(cfg: SimulatorConfig, profiles, psf_size: int) -> dict:
    """JSON-ready settings that rebuild ``cfg`` (:func:`config_from_dict`); the PSF as its profiles."""
    out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in cfg.__dict__.items() if k != "psf"}
    out["psf_profiles"] = [list(map(float, p.array())) for p in profiles]
    out["psf_size"] = psf_size
    return out


def config_from_dict(d: dict) -> tuple[SimulatorConfig, list[PowerLawPSF]]:
    """The simulator settings and PSF profiles written by :func:`config_to_dict`."""
    d = dict(d)
    profiles = [PowerLawPSF(*p) for p in d.pop("psf_profiles")]
    size = d.pop("psf_size")
    arrays = {k: np.asarray(v, float) for k, v in d.items() if isinstance(v, list)}
    cfg = SimulatorConfig(psf=kernels(profiles, size, d["oversample"]), **{**d, **arrays})
    return cfg, profiles


def calibrate_faint_light(field, prior, cfg: SimulatorConfig, levels=(0.0, 200.0, 400.0, 800.0),
                          images: int = 8, seed: int = 0,
                          margin: float = 0.2) -> tuple[SimulatorConfig, dict]:
    """Set the range of unresolved light by matching the background estimator on simulations to the field.

    The field's background estimate minus its sky (reference band) has a 10th and a 90th percentile;
    fields simulated with unresolved light ``L`` (and the prior's resolved stars) give a median excess
    that grows linearly with ``L``. The range of ``L`` whose median excess spans the field's 10th-90th
    percentiles, widened by ``margin`` (fraction) either side, replaces ``cfg``'s. Returns the new
    settings and the measurements (electrons per pixel).
    """
    import dataclasses

    import jax

    from starmodels.tiles.simulate import simulate_batch

    est = estimate_background(jnp.asarray(field.image), cfg.background_box, cfg.background_quantile)
    excess = np.asarray(est)[0] - np.asarray(field.sky[0])
    q10, q90 = (float(v) for v in np.quantile(excess, [0.1, 0.9]))
    h, w = field.shape
    n_tiles = (h // prior.tile_size, w // prior.tile_size)
    medians = []
    for i, level in enumerate(levels):
        c = dataclasses.replace(cfg, faint_light_lo=float(level), faint_light_hi=float(level),
                                max_gradient=0.0)
        s = simulate_batch(jax.random.PRNGKey(seed + i), prior, c, images, n_tiles)
        sky = np.asarray(s["background"])[:, 0] - level
        medians.append(float(np.median(np.asarray(s["background_estimate"])[:, 0] - sky)))
    slope, icept = np.polyfit(np.asarray(levels), np.asarray(medians), 1)
    lo, hi = (q10 - icept) / slope, (q90 - icept) / slope
    span = hi - lo
    lo, hi = max(lo - margin * span, 0.0), max(hi + margin * span, 0.0)
    new = dataclasses.replace(cfg, faint_light_lo=float(lo), faint_light_hi=float(hi))
    return new, {"field_excess_q10_q90": [q10, q90], "levels": list(levels), "sim_median_excess": medians,
                 "faint_light_range": [float(lo), float(hi)]}
