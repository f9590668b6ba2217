"""Wake-phase fits and user-facing results of tile models: luminosity function, instrument, counts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import starmodels  # noqa: F401
from starmodels.tiles.encoder import TileEncoder, sample_catalogs, split_params
from starmodels.tiles.prior import TilePrior
from starmodels.tiles.psf import PowerLawPSF, fine_kernel
from starmodels.tiles.results import count_interval, mode_table, true_count
from starmodels.tiles.simulate import SimulatorConfig, simulate_batch
from starmodels.tiles.wake import fit_instrument, fit_luminosity

PSF = PowerLawPSF(0.81, 1.55, 0.16, 0.018, 7.2, 2.6)


def test_luminosity_fit_recovers_a_pareto_exponent_and_density():
    prior = TilePrior(mean_sources=0.5, alpha=1.3, flux_min=700.0, bands=("r",), colour_mean=(), colour_sd=())
    n, _, fl = prior.sample(jax.random.PRNGKey(0), (), (200, 200))
    fluxes = np.asarray(fl)[..., 0][np.arange(2) < np.asarray(n)[..., None]]
    out = fit_luminosity(fluxes, 3000.0, 1e6, n_tiles=200 * 200, flux_min=700.0)
    assert out["alpha"] == pytest.approx(1.3, abs=3 * out["alpha_sd"])
    assert out["mean_sources"] == pytest.approx(float(np.asarray(n).mean()), rel=0.15)
    with pytest.raises(ValueError, match="too few"):
        fit_luminosity(fluxes[:5], 3000.0, 1e6, n_tiles=10, flux_min=700.0)


def test_instrument_fit_recovers_psf_width_and_flux_scale():
    """Given the true catalog, the fit finds a 10% wider PSF core and a 5% flux scale it was not told."""
    prior = TilePrior(mean_sources=0.15, flux_min=5e3, flux_max=1e5, bands=("r",), colour_mean=(),
                      colour_sd=())
    true = dataclasses.replace(PSF, sigma1=PSF.sigma1 * 1.1)
    cfg = SimulatorConfig(psf=np.asarray(fine_kernel(jnp.asarray(true.array()), 15, 2))[None], oversample=2,
                          band_offsets=np.zeros((1, 2)), background_lo=np.array([800.0]),
                          background_hi=np.array([800.0]), read_variance=np.array([20.0]), max_gradient=0.0,
                          border_tiles=0)
    s = simulate_batch(jax.random.PRNGKey(3), prior, cfg, 1, (20, 20))
    fit = fit_instrument(np.asarray(s["image"][0]), s["n_sources"][0], s["locs"][0], s["fluxes"][0] / 1.05,
                         [PSF], tile_size=2, oversample=2, band_offsets=np.zeros((1, 2)),
                         read_variance=np.array([20.0]), psf_size=15, degree=0, margin=0, steps=300,
                         learning_rate=0.03)
    assert fit.flux_scale[0] == pytest.approx(1.05, abs=0.02)
    assert fit.profiles[0].sigma1 == pytest.approx(true.sigma1, rel=0.05)
    assert fit.background[0].mean() == pytest.approx(800.0, rel=0.02)
    assert fit.history[-1] < fit.history[0]


def _params_with_known_counts():
    """Encoder outputs that are certain: tile (1, 1) has one star of 5000 e-, all others none."""
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=1, pixel_channels=4, tile_channels=4, n_pixel=1,
                      n_tile=1)
    raw = np.zeros((4, 4, 3 + 3 * 6), np.float32)
    raw[..., 0] = 20.0
    raw[1, 1, 0], raw[1, 1, 1] = -20.0, 20.0
    raw[..., 3:] = np.tile([0.0, 0.0, -3.0, -3.0, np.log(5000.0) - 8.0, -5.0], 3)
    return enc, split_params(jnp.asarray(raw), 2, 1)


def test_mode_table_and_count_interval_on_a_certain_answer():
    _, p = _params_with_known_counts()
    t = mode_table(p, 2, ("r",))
    assert len(t["row"]) == 1 and t["row"][0] == pytest.approx(2.5) and t["p_exist"][0] == pytest.approx(1.0)
    assert t["flux_r"][0] == pytest.approx(5000.0, rel=1e-4) and t["row_sd"][0] < 0.1
    draws = sample_catalogs(jax.random.PRNGKey(0), p, 2, 200)
    c = count_interval(draws, 2, min_flux=1000.0)
    assert c["lo"] == c["hi"] == 1.0
    c = count_interval(draws, 2, region=(0, 2, 0, 8))
    assert c["hi"] == 0.0                                           # the star is at row 2.5
    n = np.zeros((4, 4), int)
    n[1, 1] = 1
    locs = np.full((4, 4, 2, 2), 0.5)
    fl = np.full((4, 4, 2, 1), 5000.0)
    assert true_count(n, locs, fl, 2, min_flux=1000.0) == 1
    assert true_count(n, locs, fl, 2, min_flux=6000.0) == 0
    with pytest.raises(ValueError, match="prob"):
        count_interval(draws, 2, prob=1.5)
    with pytest.raises(ValueError, match="draw"):
        count_interval(tuple(a[0] for a in draws), 2)
