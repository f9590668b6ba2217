"""Catalog a crowded field in one call: ``starmodels.catalog(image_or_frames, model="m2_starfield")``.

A *tile model* is a trained encoder file with its prior and simulator settings in the header
(:func:`~starmodels.tiles.encoder.save_encoder`). The zoo's ``m2_starfield`` ships one
(``models/m2_starfield/encoder.eqx``, made by ``python -m benchmarks.m2_catalog``); any other file can
be given with ``encoder=``.

:func:`catalog` accepts a :class:`~starmodels.tiles.field.Field`, a list of SDSS frame files (one per
band; cut at ``ra``/``dec`` or ``center`` with ``size``), or a (B, H, W) array in electrons with the sky
included, and returns an astropy ``Table``: one row per star of the most probable catalog, with pixel
positions and their sds, RA/Dec (when a WCS is known), existence probability, and per band the flux
(electrons and nanomaggies), magnitude and their sds. :func:`write_catalog_folder` writes it as ECSV
and FITS with an overlay PNG and a summary (posterior star counts with intervals), atomically, with a
manifest written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from astropy.table import Table

from starmodels.tiles.encoder import EncoderFileError, TileEncoder, load_encoder, sample_checkerboard
from starmodels.tiles.instrument import config_from_dict
from starmodels.tiles.pipeline import ImageCatalog, catalog_image
from starmodels.tiles.prior import TilePrior
from starmodels.tiles.results import count_interval
from starmodels.tiles.simulate import SimulatorConfig

TILE_MODELS = ("m2_starfield",)


@dataclass
class TileModel:
    """A trained encoder with the prior and simulator it was trained on; ``header`` is the file's."""

    name: str
    encoder: TileEncoder
    prior: TilePrior
    simulator: SimulatorConfig
    header: dict

    @property
    def threshold(self) -> float | None:
        """Existence probability a star needs, chosen on simulations when the model was built (None:
        the most probable count per tile)."""
        return self.header.get("meta", {}).get("decision", {}).get("threshold")

    @property
    def bands(self) -> tuple[str, ...]:
        return self.prior.bands


def shipped_encoder(name: str) -> Path:
    """Path of the encoder file shipped with tile model ``name``."""
    if name not in TILE_MODELS:
        raise KeyError(f"no tile model {name!r}; available: {list(TILE_MODELS)}")
    path = Path(str(resources.files("starmodels.models") / name / "encoder.eqx"))
    if not path.is_file():
        raise FileNotFoundError(f"{name!r} has no shipped encoder ({path}); train one with "
                                f"`starmodels train-encoder {name}` or pass encoder=")
    return path


def load_tile_model(name: str = "m2_starfield", encoder=None) -> TileModel:
    """The tile model ``name`` with its shipped encoder, or the encoder file ``encoder``."""
    path = Path(encoder) if encoder is not None else shipped_encoder(name)
    enc, header = load_encoder(path, model=name)
    meta = header["meta"]
    missing = [k for k in ("prior", "simulator") if k not in meta]
    if missing:
        raise EncoderFileError(f"{path}: header lacks {missing}; it cannot be used for cataloging")
    prior = TilePrior(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["prior"].items()})
    cfg, _ = config_from_dict(meta["simulator"])
    return TileModel(name, enc, prior, cfg, header)


def load_frames(tm: TileModel, frames, **cut):
    """Cut the frames of the model's bands at the same sky, reference band first (its WCS is the
    catalog's); returns ``(field, skipped)`` with the bands of frames the model does not use.

    Raises:
        ValueError: a band the model needs has no frame.
    """
    from starmodels.tiles.field import frame_bands, load_sdss_field

    frames = [frames] if isinstance(frames, (str, Path)) else list(frames)
    bands = frame_bands(frames)
    missing = [b for b in tm.bands if b not in bands]
    if missing:
        raise ValueError(f"model {tm.name!r} needs band(s) {list(tm.bands)}; no frame for {missing} "
                         f"(got {bands})")
    used = [f for f, b in zip(frames, bands, strict=True) if b in tm.bands]
    field = load_sdss_field(used, bands=tm.bands, **cut)
    return field, [b for b in bands if b not in tm.bands]


def model_image(tm: TileModel, field) -> np.ndarray:
    """The (B, H, W) image of ``field`` in the model's band order; the field's reference band must be
    the model's. Warns if the field's band offsets differ from those the encoder was trained with by
    more than 0.3 pixel."""
    missing = [b for b in tm.bands if b not in field.bands]
    if missing:
        raise ValueError(f"model {tm.name!r} needs band(s) {list(tm.bands)}; missing {missing} "
                         f"(got {list(field.bands)})")
    if field.bands[0] != tm.bands[0]:
        raise ValueError(f"the field's reference band is {field.bands[0]!r}, the model's {tm.bands[0]!r}: "
                         f"cut the field with bands={list(tm.bands)} (positions and the WCS are the "
                         "reference band's)")
    idx = [field.bands.index(b) for b in tm.bands]
    if not np.allclose(field.band_offsets[idx], tm.simulator.band_offsets, atol=0.3):
        import warnings

        warnings.warn(f"band offsets of this field {field.band_offsets[idx].tolist()} differ from those "
                      f"the encoder was trained with {tm.simulator.band_offsets.tolist()} by more than "
                      "0.3 pixel", stacklevel=3)
    return field.image[idx]


def catalog(image_or_frames, model: str = "m2_starfield", *, encoder=None, ra=None, dec=None, center=None,
            size=None, psf: str = "psfield", min_p_exist: float = 0.0) -> Table:
    """The most probable catalog of a crowded field, as an astropy Table (see the module docstring).

    Args:
        image_or_frames: a Field, frame file(s) (one per band), or a (B, H, W) array in electrons.
        model: tile model name; encoder: an encoder file to use instead of the shipped one.
        ra, dec (deg) or center (frame row, col), size (pixels): where to cut frames.
        psf: PSF source for frames (``"psfield"``); the encoder's own PSF profiles are used to
            simulate, the field's is only read for checks.
        min_p_exist: also drop stars whose existence probability is below this (the catalog is
            already cut at the model's decision threshold, chosen on simulations).
    """
    from starmodels.tiles.field import Field

    tm = load_tile_model(model, encoder)
    cut = {k: v for k, v in dict(ra=ra, dec=dec, center=center, size=size).items() if v is not None}
    if isinstance(image_or_frames, Field):
        field = image_or_frames
    elif isinstance(image_or_frames, (str, Path)) or (
            isinstance(image_or_frames, (list, tuple))
            and all(isinstance(p, (str, Path)) for p in image_or_frames)):
        field, _ = load_frames(tm, image_or_frames, psf=psf, **cut)
    else:
        if cut:
            raise TypeError(f"{sorted(cut)} apply to frame files, not to an image array")
        field = None
    image = np.asarray(image_or_frames, np.float32) if field is None else model_image(tm, field)
    res = catalog_image(tm.encoder, image, tm.prior, tm.simulator, tm.threshold)
    return to_table(res, tm, field, min_p_exist)


def to_table(res: ImageCatalog, tm: TileModel, field=None, min_p_exist: float = 0.5) -> Table:
    """The per-star table of an :class:`~starmodels.tiles.pipeline.ImageCatalog`, with units."""
    from starmodels.tiles.units import flux_to_mag

    t = Table({k: np.asarray(v) for k, v in res.table.items()})
    t = t[t["p_exist"] >= min_p_exist]
    for c in ("row", "col", "row_sd", "col_sd"):
        t[c].unit = "pix"
    if field is not None:
        sky = field.wcs.pixel_to_world(np.asarray(t["col"]), np.asarray(t["row"]))
        t["ra"], t["dec"] = sky.ra.deg, sky.dec.deg
        t["ra"].unit = t["dec"].unit = "deg"
        t["frame_row"] = np.asarray(t["row"]) + field.origin[0, 0]
        t["frame_col"] = np.asarray(t["col"]) + field.origin[0, 1]
    for b in tm.bands:
        t[f"flux_{b}"].unit = t[f"flux_{b}_sd"].unit = "electron"
        if field is not None:
            conv = float(field.nelec_per_nmgy[field.bands.index(b)])
            t[f"flux_{b}_nmgy"] = np.asarray(t[f"flux_{b}"]) / conv
            t[f"flux_{b}_nmgy"].unit = "nmgy"
            t[f"mag_{b}"] = flux_to_mag(np.asarray(t[f"flux_{b}"]), conv)
            t[f"mag_{b}_sd"] = 2.5 / np.log(10) * np.asarray(t[f"flux_{b}_sd"]) / np.asarray(t[f"flux_{b}"])
            t[f"mag_{b}"].unit = t[f"mag_{b}_sd"].unit = "mag"
    t.meta.update({"model": tm.name, "bands": list(tm.bands), "tile_size": tm.prior.tile_size,
                   "min_p_exist": min_p_exist, "inference_seconds": res.seconds})
    return t


def count_summary(res: ImageCatalog, tm: TileModel, seed: int = 0, limits=(1000.0, 3000.0, 10000.0),
                  prob: float = 0.9, num_samples: int = 1000) -> dict:
    """Posterior numbers of stars brighter than each flux limit (electrons, reference band) in the
    whole image, with central ``prob`` intervals, from ``num_samples`` catalogs drawn from the encoder
    (:func:`~starmodels.tiles.encoder.sample_checkerboard`; the same draws for every limit)."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    draws = sample_checkerboard(jax.random.PRNGKey(seed), tm.encoder, jnp.asarray(res.image),
                                jnp.asarray(res.background), num_samples, tm.prior.log_flux_bounds())
    out = {}
    for lim in limits:
        c = count_interval(draws, tm.prior.tile_size, min_flux=lim, prob=prob)
        out[f">= {lim:g} e-"] = {k: c[k] for k in ("mean", "sd", "lo", "hi", "prob")}
    return out


def write_catalog_folder(folder, table: Table, image: np.ndarray, summary: dict) -> list[str]:
    """Write ``catalog.ecsv``, ``catalog.fits``, ``overlay.png``, ``summary.json`` and last the manifest,
    each atomically; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from starmodels.atomic import atomic_path, check_writable_folder, write_manifest, write_text

    folder = check_writable_folder(folder)
    with atomic_path(folder / "catalog.ecsv") as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    fits_table = table.copy()
    m = table.meta
    fits_table.meta = {"MODEL": m.get("model", ""), "BANDS": ",".join(m.get("bands", [])),
                       "TILESIZE": m.get("tile_size", 0), "MINPEXIS": m.get("min_p_exist", 0.0)}
    for c in fits_table.colnames:
        unit = fits_table[c].unit
        if unit is not None:
            try:
                unit.to_string("fits")
            except ValueError:                        # not a FITS unit: said in the column's description
                fits_table[c].unit = None
                fits_table[c].description = f"unit: {unit}"
    with atomic_path(folder / "catalog.fits") as tmp:
        fits_table.write(tmp, format="fits", overwrite=True)
    fig, ax = plt.subplots(figsize=(7, 7))
    img = np.asarray(image)[0]
    lo, hi = np.percentile(img, [5, 99.5])
    ax.imshow(np.arcsinh((img - lo) / max(hi - lo, 1e-9) * 10), origin="lower", cmap="gray_r")
    b0 = table.meta.get("bands", ["r"])[0]
    size = 4 + 3 * np.log10(np.clip(np.asarray(table[f"flux_{b0}"]), 1.0, None) / 500.0).clip(0)
    ax.scatter(table["col"], table["row"], s=size**2, facecolors="none", edgecolors="tab:red", linewidths=0.8)
    ax.set_title(f"{len(table)} stars ({b0} band; circles sized by flux)")
    ax.set_xlabel("col (pixel)")
    ax.set_ylabel("row (pixel)")
    with atomic_path(folder / "overlay.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    write_text(folder / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    files = ["catalog.ecsv", "catalog.fits", "overlay.png", "summary.json"]
    write_manifest(folder, files, {"kind": "starmodels-catalog"})
    return files
