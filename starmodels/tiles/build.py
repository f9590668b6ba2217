"""Build a tile model for a real field: set up the simulator from the field, sleep, wake, fine-tune.

1. **Set-up** (:func:`setup_from_field`): PSF profiles fitted to the field's PSF stamps, WCS band
   offsets, frame sky and dark variance, the range of unresolved light (calibrated so that simulated
   fields reproduce the field's background excess) and the mean colour, all read off the field's own
   data (:mod:`starmodels.tiles.instrument`); the prior's density and luminosity
   exponent start from the published M2 values (0.6 stars per 2x2 tile above 700 e-, exponent 1).
2. **Sleep**: the encoder is trained on fresh simulations (:func:`~starmodels.tiles.train.train_encoder`).
3. **Wake** (optional): with the encoder's catalog of the real image fixed, the PSF profiles, flux
   scales and a smooth background are fitted to the image (:func:`~starmodels.tiles.wake.fit_instrument`);
   the simulator takes the fitted PSF and the encoder is fine-tuned on the new simulations.
4. **Decision**: the existence probability a star needs to enter the catalog is chosen by the F1 of
   catalogs of simulated fields (stars brighter than ``flux_limit`` electrons;
   :func:`~starmodels.tiles.evaluate.choose_threshold`).

:func:`build_tile_model` returns the final :class:`~starmodels.tiles.api.TileModel` and the one before the
wake phase; :func:`save_tile_model` writes one to an encoder file whose header holds everything needed
to use it (prior, simulator, how it was made).
"""

from __future__ import annotations

import dataclasses
import time

import jax

from starmodels.tiles.api import TileModel
from starmodels.tiles.encoder import TileEncoder, save_encoder
from starmodels.tiles.evaluate import choose_threshold
from starmodels.tiles.instrument import calibrate_faint_light, config_to_dict, kernels, simulator_config
from starmodels.tiles.pipeline import catalog_image
from starmodels.tiles.prior import TilePrior
from starmodels.tiles.recipe import RECIPE
from starmodels.tiles.train import train_encoder
from starmodels.tiles.wake import fit_instrument


def setup_from_field(field, *, mean_sources: float = 0.6, alpha: float = 1.0, flux_min: float = 700.0,
                     colour_sd: float = 0.15, calibrate: bool = True):
    """Prior and simulator settings for ``field``; returns ``(prior, cfg, profiles, measured)``."""
    cfg, measured = simulator_config(field)
    profiles = measured.pop("profiles")
    prior = TilePrior(mean_sources=mean_sources, alpha=alpha, flux_min=flux_min, bands=field.bands,
                      colour_mean=tuple(measured["colour_mean"]),
                      colour_sd=(colour_sd,) * (field.n_bands - 1))
    if calibrate:
        cfg, measured["faint_light"] = calibrate_faint_light(field, prior, cfg)
    return prior, cfg, profiles, measured


def build_tile_model(field, name: str = "m2_starfield", *, steps: int = RECIPE["steps"],
                     batch: int = RECIPE["batch"], wake_steps: int = RECIPE["wake_steps"],
                     checkerboard: bool = RECIPE["checkerboard"], seed: int = 0, flux_limit: float = 1000.0,
                     progress: bool = True, encoder_kwargs: dict | None = None,
                     prior_kwargs: dict | None = None, learning_rate: float = RECIPE["learning_rate"],
                     truncated_flux: bool = RECIPE["truncated_flux"]):
    """Train a tile model for ``field``; returns ``(final, before_wake)`` (``before_wake`` is None
    without a wake phase). Training information is in ``final.header["meta"]["training"]``, the
    decision threshold (chosen on simulations for stars brighter than ``flux_limit`` electrons) in
    ``["decision"]``. ``learning_rate``: peak of the sleep phase's schedule (the fine-tuning after the
    wake fit uses 0.3 of it). ``truncated_flux``: the encoder's reference-band flux distribution is
    truncated to the prior's support (see :mod:`starmodels.tiles.encoder`)."""
    prior, cfg, profiles, measured = setup_from_field(field, **(prior_kwargs or {}))
    bounds = prior.log_flux_bounds() if truncated_flux else None
    encoder = TileEncoder(jax.random.PRNGKey(seed), n_bands=field.n_bands, checkerboard=checkerboard,
                          flux_bounds=bounds, **(encoder_kwargs or {}))
    encoder, log = train_encoder(encoder, prior, cfg, num_steps=steps, batch=batch, seed=seed,
                                 learning_rate=learning_rate, validate_every=100, progress=progress)
    training = {"sleep": {"steps": steps, "batch": batch, "learning_rate": learning_rate,
                          "images": log.images,
                          "compile_seconds": log.compile_seconds, "run_seconds": log.run_seconds,
                          "loss": log.loss, "val_loss": log.val_loss}}
    simulator = config_to_dict(cfg, profiles, measured["psf_size"])
    meta = {"model": name, "prior": prior.to_dict(), "simulator": simulator, "measured": measured,
            "training": training}
    sleep_model = TileModel(name, encoder, prior, cfg, {"meta": meta})
    meta["decision"] = choose_threshold(sleep_model, flux_limit, seed=seed + 100)
    if wake_steps <= 0:
        return sleep_model, None
    t0 = time.perf_counter()
    res = catalog_image(encoder, field.image, prior, cfg)
    fit = fit_instrument(field.image, res.n_sources, res.locs, res.fluxes, profiles,
                         tile_size=prior.tile_size, oversample=cfg.oversample, band_offsets=cfg.band_offsets,
                         read_variance=cfg.read_variance, background=res.background)
    cfg2 = dataclasses.replace(cfg, psf=kernels(fit.profiles, measured["psf_size"], cfg.oversample))
    enc2, log2 = train_encoder(encoder, prior, cfg2, num_steps=wake_steps, batch=batch, seed=seed + 1,
                               learning_rate=0.3 * learning_rate, validate_every=100, progress=progress)
    training2 = {**training, "wake": {
        "seconds": time.perf_counter() - t0, "psf_profiles": [p.array().tolist() for p in fit.profiles],
        "flux_scale": fit.flux_scale.tolist(), "nll_history": fit.history,
        "fine_tune": {"steps": wake_steps, "run_seconds": log2.run_seconds, "val_loss": log2.val_loss}}}
    meta2 = {**meta, "simulator": config_to_dict(cfg2, fit.profiles, measured["psf_size"]),
             "training": training2}
    final = TileModel(name, enc2, prior, cfg2, {"meta": meta2})
    meta2["decision"] = choose_threshold(final, flux_limit, seed=seed + 100)
    return final, sleep_model


def save_tile_model(path, tm: TileModel, command: str | None = None) -> None:
    """Write ``tm`` as an encoder file (atomically) with its prior, simulator and provenance."""
    from starmodels.infer.fit import versions

    meta = dict(tm.header.get("meta", {}))
    meta.update({"model": tm.name, "command": command, "versions": versions(),
                 "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    save_encoder(path, tm.encoder, meta)
