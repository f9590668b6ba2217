"""The model zoo: list and load models by name from their cards (``models/<name>/card.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from starmodels.detectors import PixelDetector
from starmodels.forward import ForwardModel
from starmodels.noise import Gaussian, Poisson, PoissonGaussian
from starmodels.optics import TelescopeOptics
from starmodels.sources import BinaryStar, PointSource

_SOURCES = {"PointSource": PointSource, "BinaryStar": BinaryStar}
_NOISE = {"Poisson": Poisson, "Gaussian": Gaussian, "PoissonGaussian": PoissonGaussian}


def _root():
    return resources.files("starmodels.models")


def names() -> list[str]:
    """Names of the zoo models shipped with this installation."""
    return sorted(p.name for p in _root().iterdir() if p.is_dir() and (p / "card.toml").is_file())


def card(name: str) -> dict:
    """The parsed model card of ``name``."""
    if name not in names():
        raise KeyError(f"no zoo model {name!r}; available: {names()}")
    return tomllib.loads((_root() / name / "card.toml").read_text())


def build(c: dict) -> ForwardModel:
    """Assemble a ForwardModel from a card: component types, settings and priors."""
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
    optics = TelescopeOptics(
        params("optics", TelescopeOptics.param_names)["zernike"],
        diameter=o["diameter_m"], wf_npixels=o["wf_npixels"], psf_npixels=d["npixels"],
        pixel_scale=d["pixel_scale_arcsec"], oversample=d["oversample"], noll=o["noll"],
        wavelengths_nm=o["wavelengths_nm"], spider_width=o.get("spider_width_m", 0.0),
        spider_angles=o.get("spider_angles_deg", ()),
    )
    detector = PixelDetector(d["npixels"], d["pixel_scale_arcsec"], d["oversample"],
                             **params("detector", PixelDetector.param_names))
    noise_cls = _NOISE[nz["type"]]
    noise = noise_cls(**params("noise", noise_cls.param_names))
    return ForwardModel(source, optics, detector, noise, name=c["name"])


@dataclass(frozen=True)
class ZooModel:
    """A zoo entry: the model, its card, its true parameters and fit defaults."""

    name: str
    model: ForwardModel
    card: dict
    truth: dict = field(repr=False)
    fit_defaults: dict = field(repr=False)

    def simulate(self, seed: int = 0) -> tuple[np.ndarray, dict]:
        """Simulated data at the card's true parameters: ``(data, truth)``."""
        return self.model.simulate(self.truth, seed=seed), dict(self.truth)

    @property
    def readme(self) -> str:
        return (_root() / self.name / "README.md").read_text()


def load(name: str) -> ZooModel:
    """Load zoo model ``name`` (see :func:`names`)."""
    c = card(name)
    truth = {k: np.asarray(v, float) for k, v in c["truth"].items()}
    return ZooModel(name=name, model=build(c), card=c, truth=truth, fit_defaults=c.get("fit", {}))
