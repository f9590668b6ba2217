"""Diffuse sky models: smooth backgrounds as Gaussian processes written as NumPyro programs, seen by
channels (instruments, bands) through their own pixel grids and PSFs.

* :mod:`starmodels.sky.correlated_field`: a log-normal sky whose power spectrum (a power law times a
  smooth learned deviation) and overall fluctuation level are inferred together with the field.
* :mod:`starmodels.sky.reproject`: scene -> channel pixels as a precomputed flux-conserving linear map.
* :mod:`starmodels.sky.convolve`: linear PSF convolution by FFT.
* :mod:`starmodels.sky.psf_images`: PSF checks, re-centring, resampling; parametric PSFs.
* :mod:`starmodels.sky.channel`, :mod:`starmodels.sky.channel_read`: a channel (image, WCS, noise map,
  mask, PSF) and reading channels from FITS with every problem reported at once.
* :mod:`starmodels.sky.masks`: DQ bits, NaNs, regions, hold-out splits.
* :mod:`starmodels.sky.noise_estimate`: noise level and neighbour correlation of images without ERR.
* :mod:`starmodels.sky.image_fits`: writing images with their WCS, atomically.
* :mod:`starmodels.sky.scene`: the scene seen by channels as a NumPyro program (latent fields mixed into
  the channels, per-channel reprojection, PSF, background and noise), fitted by SVI, with reduced chi^2
  on fitted and held-out pixels.
"""

from starmodels.sky.convolve import FFTConvolver, fft_convolve
from starmodels.sky.correlated_field import (
    FieldGrid,
    FieldPriors,
    correlated_field,
    empirical_power_spectrum,
    lognormal,
    model_covariance,
    model_power_spectrum,
    sample_correlated_field,
)
from starmodels.sky.psf_images import gaussian_psf, moffat_psf, normalized_psf, recenter_psf, resample_psf
from starmodels.sky.reproject import PixelMap, apply, default_oversample

__all__ = ["FFTConvolver", "FieldGrid", "FieldPriors", "PixelMap", "apply", "correlated_field",
           "default_oversample", "empirical_power_spectrum", "fft_convolve", "gaussian_psf", "lognormal",
           "model_covariance", "model_power_spectrum", "moffat_psf", "normalized_psf", "recenter_psf",
           "resample_psf", "sample_correlated_field"]
