"""Stars in a real image: detect them, then build the K-star model of an :class:`~starmodels.io.Observation`.

``detect_stars`` finds local maxima of the PSF-matched-filter signal-to-noise
map; ``star_field_model`` turns an observation, its PSF and a list of starting
positions into a :class:`~starmodels.forward.ForwardModel`: K point sources
(positions near the starting ones, positive fluxes), a sampled sky level,
the PSF image as optics, and the CCD likelihood (Poisson + read noise) with
the observation's mask.
"""

from __future__ import annotations

import numpy as np
import numpyro.distributions as dist
from astropy.table import Table
from scipy import ndimage, signal

from starmodels.detectors import PixelDetector
from starmodels.forward import ForwardModel
from starmodels.image_psf import ImagePSF
from starmodels.noise import Gaussian, PoissonGaussian
from starmodels.sources import StarField


def _sky(obs) -> np.ndarray:
    if obs.sky is not None:
        return np.broadcast_to(np.asarray(obs.sky, float), obs.shape)
    return np.full(obs.shape, float(np.median(obs.data[obs.use])))


def detect_stars(obs, psf, *, threshold: float = 5.0, min_separation: int = 2, border: int = 0,
                 max_stars: int | None = None) -> Table:
    """Point sources in ``obs``: peaks of the PSF-matched S/N map above ``threshold`` sigma.

    The image minus its local background (the median of the used pixels
    above the sky) is correlated with the normalised ``psf``; its noise comes
    from ``obs.variance`` (or the data, for Poisson counts). Peaks closer
    than ``min_separation`` pixels to a brighter one, or within ``border``
    pixels of the edge, are dropped. Returns a table sorted by flux:
    ``row, col`` (0-based pixels of ``obs``), ``snr`` and ``flux`` (the
    matched-filter flux estimate, units of ``obs``; biased high in crowds).
    """
    psf = np.asarray(psf, float) / np.sum(psf)
    use = obs.use
    resid = np.where(use, obs.data - _sky(obs), 0.0)
    resid = np.where(use, resid - np.median(resid[use]), 0.0)
    var = obs.variance if obs.variance is not None else np.maximum(obs.data, 1.0)
    var = np.where(use, var, 0.0)
    signal_map = signal.fftconvolve(resid, psf[::-1, ::-1], mode="same")
    noise_map = np.sqrt(np.maximum(signal.fftconvolve(var, (psf**2)[::-1, ::-1], mode="same"), 1e-30))
    snr = signal_map / noise_map
    peaks = (snr == ndimage.maximum_filter(snr, size=2 * min_separation + 1)) & (snr > threshold) & use
    if border:
        peaks[:border], peaks[-border:], peaks[:, :border], peaks[:, -border:] = False, False, False, False
    rows, cols = np.nonzero(peaks)
    flux = signal_map[rows, cols] / np.sum(psf**2)
    order = np.argsort(-flux)[:max_stars]
    return Table({"row": rows[order].astype(float), "col": cols[order].astype(float),
                  "snr": snr[rows, cols][order], "flux": flux[order]})


def star_field_model(obs, psf, stars, *, position_sd: float = 1.0, flux_log_sd: float = 1.0,
                     sky_sd: float | None = None, shift: str = "fourier",
                     name: str = "star_field") -> ForwardModel:
    """The K-star model of ``obs`` (square image) with starting positions and fluxes from ``stars``.

    ``stars``: a table (or mapping) with ``row``, ``col`` (0-based pixels)
    and ``flux`` (units of ``obs``). Priors: positions Normal(start,
    ``position_sd`` pixels); fluxes LogNormal(log start, ``flux_log_sd``);
    sky Normal(the median image level, ``sky_sd``, default 10% of it). The
    likelihood is Poisson + read noise (``read_sigma = sqrt(dark_variance) *
    gain`` from ``obs.meta``) for data in electrons, else Gaussian with the
    observation's sigma. Sites: ``source.x``, ``source.y`` (arcsec from the
    image centre), ``source.flux``, ``detector.background``.
    """
    ny, nx = obs.shape
    if ny != nx:
        raise ValueError(f"star_field_model needs a square image; got {ny}x{nx} (cut a square cutout)")
    rows, cols, flux = (np.asarray(stars[k], float) for k in ("row", "col", "flux"))
    if rows.size == 0 or not np.all(flux > 0):
        raise ValueError("star_field_model needs at least one star, each with a positive flux estimate")
    scale = obs.pixel_scale or 1.0
    centre = (ny - 1) / 2
    level = float(np.median(obs.data[obs.use]))
    source = StarField({
        "x": dist.Normal((cols - centre) * scale, position_sd * scale),
        "y": dist.Normal((rows - centre) * scale, position_sd * scale),
        "flux": dist.LogNormal(np.log(flux), flux_log_sd),
    })
    optics = ImagePSF(psf, pixel_scale=scale, npixels=ny, shift=shift)
    detector = PixelDetector(ny, scale, 1, jitter=0.0,
                             background=dist.Normal(level, sky_sd or 0.1 * abs(level)))
    gain, dark = obs.gain, obs.meta.get("dark_variance")
    if obs.unit == "electron" and gain is not None and dark is not None:
        noise = PoissonGaussian(float(np.sqrt(dark) * gain), mask=obs.mask)
    elif obs.variance is not None:
        noise = Gaussian(obs.sigma, mask=obs.mask)
    else:
        raise ValueError("star_field_model needs data in electrons with gain and dark_variance, or a "
                         "variance map")
    return ForwardModel(source, optics, detector, noise, name=name)
