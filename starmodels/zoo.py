"""The model zoo: list and load models by name from their cards (``models/<name>/card.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources

import jax
import numpy as np
from numpyro import handlers

from starmodels.detectors import PixelDetector
from starmodels.forward import ForwardModel
from starmodels.image_psf import ImagePSF, triangle_psf
from starmodels.noise import Gaussian, Poisson, PoissonGaussian
from starmodels.optics import TelescopeOptics
from starmodels.plate import ImagePlate
from starmodels.sources import BinaryStar, PointSource, PointSourceFlux

_SOURCES = {"PointSource": PointSource, "PointSourceFlux": PointSourceFlux, "BinaryStar": BinaryStar}
_PSF_IMAGES = {"triangle": triangle_psf}
_NOISE = {"Poisson": Poisson, "Gaussian": Gaussian, "PoissonGaussian": PoissonGaussian}


def _root():
    return resources.files("starmodels.models")


def names() -> list[str]:
    """Names of the zoo models shipped with this installation."""
    return sorted(p.name for p in _root().iterdir() if p.is_dir() and (p / "card.toml").is_file())


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def card(name: str, variant: str | None = None) -> dict:
    """The parsed card of ``name``, with the sections of ``variant`` (``[variants.<name>]``) merged in."""
    if name not in names():
        raise KeyError(f"no zoo model {name!r}; available: {names()}")
    c = tomllib.loads((_root() / name / "card.toml").read_text())
    variants = c.pop("variants", {})
    if variant is not None:
        if variant not in variants:
            raise KeyError(f"zoo model {name!r} has no variant {variant!r}; variants: {sorted(variants)}")
        c = _merge(c, variants[variant])
        c["variant"] = variant
    return c


def _optics(o: dict, d: dict, params):
    kind = o.get("type", "TelescopeOptics")
    if kind == "ImagePSF":
        if o["psf"] not in _PSF_IMAGES:
            raise ValueError(f"unknown PSF image {o['psf']!r}; known: {sorted(_PSF_IMAGES)}")
        psf = _PSF_IMAGES[o["psf"]](**o.get("psf_args", {}))
        return ImagePSF(psf, pixel_scale=d["pixel_scale_arcsec"], oversample=d["oversample"],
                        shift=o.get("shift", "fourier"))
    if kind != "TelescopeOptics":
        raise ValueError(f"unknown optics type {kind!r}; known: TelescopeOptics, ImagePSF")
    return TelescopeOptics(
        params("optics", TelescopeOptics.param_names)["zernike"],
        diameter=o["diameter_m"], wf_npixels=o["wf_npixels"], psf_npixels=d["npixels"],
        pixel_scale=d["pixel_scale_arcsec"], oversample=d["oversample"], noll=o["noll"],
        wavelengths_nm=o["wavelengths_nm"], spider_width=o.get("spider_width_m", 0.0),
        spider_angles=o.get("spider_angles_deg", ()),
    )


def build(c: dict) -> ForwardModel | ImagePlate:
    """Assemble a model from a card: component types, settings, priors; a plate if ``[plate]`` is set."""
    priors = c["priors"]
    fixed = c.get("fixed", {})

    def params(role, names_):
        out = {}
        for n in names_:
            full = f"{role}.{n}"
            if full in priors and full in fixed:
                raise ValueError(f"card {c['name']!r}: {full} is both a prior and fixed")
            if full not in priors and full not in fixed:
                raise ValueError(f"card {c['name']!r}: {full} needs a prior or a fixed value")
            out[n] = priors[full] if full in priors else fixed[full]
        return out

    s, o, d, nz = c["source"], c["optics"], c["detector"], c["noise"]
    src_cls = _SOURCES[s["type"]]
    source = src_cls(params("source", src_cls.param_names))
    optics = _optics(o, d, params)
    detector = PixelDetector(d["npixels"], d["pixel_scale_arcsec"], d["oversample"],
                             **params("detector", PixelDetector.param_names))
    noise_cls = _NOISE[nz["type"]]
    noise = noise_cls(**params("noise", noise_cls.param_names))
    model = ForwardModel(source, optics, detector, noise, name=c["name"])
    if "plate" in c:
        return ImagePlate(model, c["plate"]["local"], c["plate"]["images"])
    return model


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry: the model, its card, its true parameters and fit defaults.

    Sampled sites without a value in the card's ``[truth]`` (e.g. the
    per-image fluxes of a plate) are drawn from their prior by ``simulate``.
    """

    name: str
    model: ForwardModel | ImagePlate
    card: dict
    truth: dict = field(repr=False)
    fit_defaults: dict = field(repr=False)

    def simulate(self, seed: int = 0, images: int | None = None) -> tuple[np.ndarray, dict]:
        """Simulated data and the parameters that made it: ``(data, truth)``.

        ``images``: for plate models, how many images (default: the card's),
        e.g. a large training set for amortized VI.
        """
        model = self.model
        if images is not None:
            if not isinstance(model, ImagePlate):
                raise ValueError(f"{self.name!r} is a single-image model; images= needs a plate model")
            model = model.resize(images)
        truth = dict(self.truth)
        missing = [k for k in model.priors() if k not in truth]
        if missing:
            key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
            with handlers.seed(rng_seed=key):
                drawn = model.sample_params()
            truth.update({k: np.asarray(drawn[k]) for k in missing})
        return model.simulate(truth, seed=seed), truth

    @property
    def readme(self) -> str:
        """The model's README (physics, parameters with units, origin), as Markdown text."""
        return (_root() / self.name / "README.md").read_text()


def load(name: str, variant: str | None = None) -> ZooModel:
    """Load zoo model ``name`` (see :func:`names`), optionally one of its card's variants."""
    c = card(name, variant)
    if c.get("kind") == "tile_catalog":
        raise ValueError(f"{name!r} is a tile-catalog model: use starmodels.catalog(image, model={name!r}) "
                         f"or starmodels.tiles.api.load_tile_model({name!r})")
    truth = {k: np.asarray(v, float) for k, v in c.get("truth", {}).items()}
    return ZooModel(name=name, model=build(c), card=c, truth=truth, fit_defaults=c.get("fit", {}))
