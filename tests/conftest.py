"""Shared fixtures. Two host devices are configured before starmodels (and JAX) start."""

import os

os.environ.setdefault("STARMODELS_HOST_DEVICES", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax.numpy as jnp  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import pytest  # noqa: E402

import starmodels as sm  # noqa: E402
from starmodels.detectors import PixelDetector  # noqa: E402
from starmodels.forward import ForwardModel  # noqa: E402
from starmodels.noise import Poisson  # noqa: E402
from starmodels.optics import TelescopeOptics  # noqa: E402
from starmodels.sources import PointSource  # noqa: E402


def small_model(noise=None) -> ForwardModel:
    """A cheap model: one star, defocus fixed, 12x12 pixels, 32-px pupil, one wavelength."""
    src = PointSource({"x": dist.Normal(0.0, 0.05), "y": dist.Normal(0.0, 0.05),
                       "log_flux": dist.Normal(4.0, 0.5)})
    optics = TelescopeOptics(jnp.array([20.0]), wf_npixels=32, psf_npixels=12, pixel_scale=0.05,
                             noll=(4,), wavelengths_nm=(600.0,))
    det = PixelDetector(12, 0.05, 1)
    return ForwardModel(src, optics, det, noise or Poisson(), name="small")


SMALL_TRUTH = {"source.x": 0.02, "source.y": -0.01, "source.log_flux": 4.2}


@pytest.fixture(scope="session")
def small():
    model = small_model()
    data = model.simulate(SMALL_TRUTH, seed=3)
    return model, data


@pytest.fixture(scope="session")
def small_fit(small):
    model, data = small
    return sm.fit(model, data, num_chains=2, num_warmup=300, num_draws=600, seed=11, progress=False,
                  truth=SMALL_TRUTH)


@pytest.fixture(scope="session")
def binary():
    return sm.zoo.load("binary_star")
