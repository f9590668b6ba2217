"""Tile catalogs' generative model: PSF profile, renderer, prior, simulator, encoder, training, files."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import starmodels  # noqa: F401
from starmodels.tiles.encoder import (
    EncoderFileError,
    TileEncoder,
    load_encoder,
    log_q,
    mode_catalog,
    sample_catalogs,
    save_encoder,
    split_params,
)
from starmodels.tiles.prior import PriorError, TilePrior, tile_catalog_model
from starmodels.tiles.psf import PowerLawPSF, fine_kernel, fit_profile, profile, sampled
from starmodels.tiles.render import render_catalog_slow, render_tiles
from starmodels.tiles.simulate import SimulatorConfig, simulate_batch
from starmodels.tiles.train import train_encoder

SDSS_R = PowerLawPSF(0.81, 1.55, 0.16, 0.018, 7.2, 2.6)  # a profile like the M2 r band (pixels)


def _pixel_psf_at(params, r, c, shape, ss=16):
    """Pixel-integrated profile of a star at (r, c), normalised like the 25-pixel kernel."""
    sub = (np.arange(ss) + 0.5) / ss - 0.5
    ys = np.arange(shape[0])[:, None] + sub
    xs = np.arange(shape[1])[:, None] + sub
    r2 = (ys - r)[:, :, None, None] ** 2 + (xs - c)[None, None] ** 2
    img = np.asarray(profile(jnp.asarray(r2), params))
    g = np.arange(-12, 13)[:, None] + sub
    g2 = g[:, :, None, None] ** 2 + g[None, None] ** 2
    norm = np.asarray(profile(jnp.asarray(g2), params)).mean((1, 3)).sum()
    return img.mean((1, 3)) / norm


def _one_star(u, nt=10, ts=2, flux=1.0, tile=(5, 5)):
    locs = np.zeros((nt, nt, 1, 2))
    fl = np.zeros((nt, nt, 1, 1))
    on = np.zeros((nt, nt, 1), bool)
    locs[tile + (0,)] = u
    fl[tile + (0,)] = flux
    on[tile + (0,)] = True
    return jnp.asarray(locs), jnp.asarray(fl), jnp.asarray(on)


@pytest.mark.parametrize("u", [(0.25, 0.25), (0.5, 0.5), (0.1, 0.9), (0.37, 0.61)])
def test_render_matches_pixel_integrated_profile(u):
    par = jnp.asarray(SDSS_R.array())
    locs, fl, on = _one_star(u)
    img = np.asarray(render_tiles(locs, fl, on, fine_kernel(par, 25, 2)[None], 2, oversample=2))[0]
    ref = _pixel_psf_at(par, (5 + u[0]) * 2 - 0.5, (5 + u[1]) * 2 - 0.5, img.shape)
    assert np.abs(img - ref).max() < 0.015 * ref.max()
    assert np.unravel_index(img.argmax(), img.shape) == np.unravel_index(ref.argmax(), ref.shape)


def test_render_matches_slow_fourier_render_for_a_well_sampled_psf():
    """With a PSF sampled well above Nyquist, interpolation and Fourier shifts agree closely."""
    g = np.arange(-12, 13)
    psf = np.exp(-(g[:, None] ** 2 + g[None] ** 2) / (2 * 2.5**2))
    psf = np.stack([psf / psf.sum()] * 2)
    rng = np.random.default_rng(0)
    nt, ts, m = 10, 2, 2
    n = rng.integers(0, 3, (nt, nt))
    locs = rng.uniform(size=(nt, nt, m, 2))
    fl = rng.uniform(1e3, 1e5, (nt, nt, m, 2))
    on = np.arange(m) < n[..., None]
    off = np.array([[0.0, 0.0], [0.3, -0.4]])
    img = np.asarray(render_tiles(jnp.asarray(locs), jnp.asarray(fl), jnp.asarray(on), jnp.asarray(psf), ts,
                                  off, border_tiles=2))
    ii, jj, mm = np.nonzero(on)
    pos = np.stack([(ii + locs[ii, jj, mm, 0]) * ts - 4.5, (jj + locs[ii, jj, mm, 1]) * ts - 4.5], 1)
    ref = render_catalog_slow(pos, fl[ii, jj, mm], psf, img.shape[1:], off)
    assert np.abs(img - ref).max() < 0.01 * ref.max()


def test_render_conserves_flux_and_applies_band_offsets():
    par = jnp.asarray(SDSS_R.array())
    k = fine_kernel(par, 25, 2)
    locs, fl, on = _one_star((0.3, 0.6), nt=20, tile=(10, 10), flux=1000.0)
    fl2 = jnp.concatenate([fl, fl], -1)
    img = np.asarray(render_tiles(locs, fl2, on, jnp.stack([k, k]), 2, jnp.array([[0.0, 0.0], [1.0, -1.0]]),
                                  oversample=2))
    assert img[0].sum() == pytest.approx(1000.0, rel=1e-4)
    # band 1 is band 0 moved one pixel down and one left (exact: integer shift)
    np.testing.assert_allclose(img[1][1:, :-1], img[0][:-1, 1:], atol=1e-3)


def test_psf_fit_recovers_a_known_profile():
    stamp = np.asarray(sampled(jnp.asarray(SDSS_R.array()), 25, 1.0, subsample=8))
    fit, info = fit_profile(stamp, PowerLawPSF(1.0, 2.5, 0.1, 0.01, 3.0, 2.0))
    assert info["max"] < 0.01
    assert fit.sigma1 == pytest.approx(SDSS_R.sigma1, rel=0.05)


def test_prior_samples_follow_the_prior():
    prior = TilePrior(mean_sources=0.6, flux_min=700.0, alpha=1.0)
    n, locs, fl = prior.sample(jax.random.PRNGKey(0), (4,), (50, 50))
    n, locs, fl = np.asarray(n), np.asarray(locs), np.asarray(fl)
    assert n.shape == (4, 50, 50) and locs.shape == (4, 50, 50, 2, 2) and fl.shape == (4, 50, 50, 2, 2)
    probs = np.asarray(prior.count_probs())
    assert n.mean() == pytest.approx((probs * np.arange(3)).sum(), abs=0.03)
    on = np.arange(2) < n[..., None]
    ref = fl[..., 0][on]
    assert ref.min() >= 700.0 and np.all(fl[~on] == 0) and np.all(locs[~on] == 0)
    two = n == 2
    assert np.all(fl[two][:, 0, 0] >= fl[two][:, 1, 0])                      # brightest first
    # Pareto with alpha = 1: P(f > 2 f_min) = 1/2 (up to the truncation at flux_max)
    assert np.mean(ref > 1400.0) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("bad", [dict(mean_sources=0.0), dict(flux_min=-1.0), dict(flux_max=10.0),
                                 dict(alpha=0.0), dict(colour_mean=()), dict(colour_sd=(-1.0,)),
                                 dict(max_sources=0)])
def test_prior_refuses_bad_settings(bad):
    with pytest.raises(PriorError):
        TilePrior(**bad)


def _cfg(nb=2, border=3):
    k = np.asarray(fine_kernel(jnp.asarray(SDSS_R.array()), 15, 2))
    return SimulatorConfig(psf=np.stack([k] * nb), oversample=2, band_offsets=np.zeros((nb, 2)),
                           background_lo=np.full(nb, 700.0), background_hi=np.full(nb, 1200.0),
                           read_variance=np.full(nb, 20.0), border_tiles=border)


def test_simulator_shapes_and_noise():
    prior, cfg = TilePrior(), _cfg()
    sims = jax.jit(lambda k: simulate_batch(k, prior, cfg, 3, (8, 8)))(jax.random.PRNGKey(1))
    assert sims["image"].shape == (3, 2, 16, 16) and sims["n_sources"].shape == (3, 8, 8)
    assert sims["locs"].shape == (3, 8, 8, 2, 2) and sims["fluxes"].shape == (3, 8, 8, 2, 2)
    empty = TilePrior(mean_sources=1e-6)
    s = jax.jit(lambda k: simulate_batch(k, empty, cfg, 8, (16, 16)))(jax.random.PRNGKey(2))
    bg = s["background"]
    z = (s["image"] - bg) / jnp.sqrt(bg + 20.0)
    assert float(jnp.std(z)) == pytest.approx(1.0, abs=0.03)
    assert bool(jnp.all(bg >= 0.9 * 700.0 - 1)) and bool(jnp.all(bg <= 1.1 * 1200.0 + 1))
    # the background estimate of an empty image is near the truth (a low quantile: below it)
    ratio = s["background_estimate"] / bg
    assert 0.97 < float(jnp.median(ratio)) < 1.0


def test_numpyro_program_runs_and_has_gradients():
    import numpyro
    from numpyro.infer.util import log_density

    prior = TilePrior()
    cfg = _cfg(border=0)
    bg = jnp.full((2, 8, 8), 1000.0)
    kw = dict(n_tiles=(4, 4), band_offsets=cfg.band_offsets, oversample=2)
    tr = numpyro.handlers.trace(numpyro.handlers.seed(tile_catalog_model, 0)).get_trace(
        prior, cfg.psf, bg, **kw)
    assert tr["image"]["value"].shape == (2, 8, 8)
    data = tr["image"]["value"]
    cond = {k: tr[k]["value"] for k in ("n_sources", "locs", "flux_u", "colour")}

    def ld(locs):
        p = dict(cond, locs=locs)
        return log_density(tile_catalog_model, (prior, cfg.psf, bg), dict(kw, image=data), p)[0]

    g = jax.grad(ld)(cond["locs"])
    assert np.isfinite(float(ld(cond["locs"]))) and bool(jnp.all(jnp.isfinite(g)))


def test_encoder_outputs_and_log_q():
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=2)
    img = jnp.full((2, 16, 16), 1000.0)
    raw = enc(img, img)
    assert raw.shape == (8, 8, 3 + 3 * 8)
    p = split_params(raw, 2, 2)
    n = jnp.array(np.random.default_rng(0).integers(0, 3, (8, 8)))
    lq = log_q(p, n, jnp.full((8, 8, 2, 2), 0.5), jnp.full((8, 8, 2, 2), 2000.0), 2)
    assert lq.shape == (8, 8) and bool(jnp.all(jnp.isfinite(lq)))
    nn, locs, fl, probs = mode_catalog(p, 2)
    assert locs.shape == (8, 8, 2, 2) and probs.shape == (8, 8, 3)
    sn, sl, sf = sample_catalogs(jax.random.PRNGKey(0), p, 2, 5)
    assert sn.shape == (5, 8, 8) and sf.shape == (5, 8, 8, 2, 2)


def _pixel_positions(n, locs, ts=2):
    """(image, row, col) of every star of a batch of tile catalogs."""
    idx = np.argwhere(np.asarray(n) >= 1)
    u = np.asarray(locs)[idx[:, 0], idx[:, 1], idx[:, 2], 0]
    return np.stack([idx[:, 0], (idx[:, 1] + u[:, 0]) * ts - 0.5, (idx[:, 2] + u[:, 1]) * ts - 0.5], 1)


def _near(a, b, tol):
    """For each row of ``a``, whether ``b`` has a star in the same image within ``tol`` pixels (L-inf)."""
    return np.array([np.any((b[:, 0] == x[0]) & np.all(np.abs(b[:, 1:] - x[1:]) < tol, axis=1)) for x in a])


def test_tiny_training_reduces_loss_and_finds_bright_isolated_stars():
    prior = TilePrior(mean_sources=0.08, flux_min=2e4, flux_max=1e5, bands=("r",), colour_mean=(),
                      colour_sd=(), max_sources=1)
    cfg = _cfg(nb=1)
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=1, max_sources=1, pixel_channels=16, tile_channels=32,
                      n_pixel=1, n_tile=2)
    enc, log = train_encoder(enc, prior, cfg, num_steps=600, batch=8, image_tiles=12, learning_rate=3e-3,
                             validate_every=100, progress=False)
    assert log.val_loss[-1] < log.val_loss[0] - 0.1
    sims = simulate_batch(jax.random.PRNGKey(99), prior, cfg, 8, (12, 12))
    p = split_params(jax.vmap(enc)(sims["image"], sims["background_estimate"]), 1, 1)
    n, locs, _, _ = mode_catalog(p, 1)
    est, true = _pixel_positions(n, locs), _pixel_positions(sims["n_sources"], sims["locs"])
    assert len(true) > 50
    assert _near(true, est, 1.0).mean() > 0.8          # recall of bright stars, within a pixel
    assert _near(est, true, 1.0).mean() > 0.8          # and few spurious detections


def test_encoder_file_round_trip_and_refusals(tmp_path):
    enc = TileEncoder(jax.random.PRNGKey(3), n_bands=1, pixel_channels=8, tile_channels=8, n_pixel=1,
                      n_tile=1)
    path = tmp_path / "enc.eqx"
    save_encoder(path, enc, {"model": "m2_starfield"})
    back, header = load_encoder(path, model="m2_starfield")
    x = jnp.full((1, 8, 8), 1000.0)
    np.testing.assert_array_equal(np.asarray(back(x, x * 0.9)), np.asarray(enc(x, x * 0.9)))
    with pytest.raises(EncoderFileError, match="star_flux"):
        load_encoder(path, model="star_flux")
    bad = tmp_path / "bad.eqx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(EncoderFileError, match="not a"):
        load_encoder(bad)
    cut = tmp_path / "cut.eqx"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(EncoderFileError, match="do not load"):
        load_encoder(cut)


def test_faint_light_has_the_requested_mean_and_colour():
    from starmodels.tiles.simulate import faint_light

    prior = TilePrior(flux_min=700.0, colour_mean=(0.2,))
    cfg = SimulatorConfig(**{**_cfg().__dict__, "faint_light_lo": 400.0, "faint_light_hi": 400.0})
    f = faint_light(jax.random.PRNGKey(0), prior, cfg, 4, (128, 128))
    per_pixel = float(f[:, 0].sum(axis=(-2, -1)).mean()) / (64 * 64)
    assert per_pixel == pytest.approx(400.0, rel=0.05)     # (Poisson counts capped at 4 per cell)
    np.testing.assert_allclose(np.asarray(f[:, 1]), np.asarray(f[:, 0]) * np.exp(0.2), rtol=1e-5)


def test_background_estimate_is_smooth_and_follows_a_gradient():
    from starmodels.tiles.simulate import estimate_background

    yy = jnp.arange(100.0)[:, None] * jnp.ones((1, 106))
    img = (1000.0 + 2.0 * yy)[None]
    est = estimate_background(img)
    assert est.shape == img.shape
    assert float(jnp.abs(est - img)[:, 8:-8, :].max()) < 20.0


def test_checkerboard_conditions_the_second_colour_on_the_first():
    from starmodels.tiles.encoder import checkerboard_log_q, colour_mask, context_maps, encode_checkerboard

    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=1, pixel_channels=8, tile_channels=8, n_pixel=1,
                      n_tile=1, checkerboard=True)
    img = 1000.0 + 50.0 * jax.random.normal(jax.random.PRNGKey(1), (1, 12, 12))
    bg = jnp.full_like(img, 1000.0)
    n = jnp.zeros((6, 6), int).at[2, 2].set(1).at[3, 2].set(2)
    locs = jnp.full((6, 6, 2, 2), 0.5)
    fl = jnp.full((6, 6, 2, 1), 3000.0)
    first = colour_mask(6, 6)
    assert bool(first[2, 2]) and not bool(first[3, 2])
    ctx = context_maps(n, locs, fl, first)
    assert ctx.shape == (1 + 2 + 6, 6, 6)
    assert float(ctx[1, 2, 2]) == 1.0 and float(jnp.abs(ctx[:, 3, 2]).sum()) == 0.0    # only given tiles
    lq = checkerboard_log_q(enc, img, bg, n, locs, fl)
    assert lq.shape == (6, 6) and bool(jnp.all(jnp.isfinite(lq)))
    # a star added to a first-colour tile changes that tile's and its second-colour neighbours' log q,
    # and nothing far away
    lq2 = checkerboard_log_q(enc, img, bg, n.at[1, 1].set(1), locs, fl)
    changed = np.asarray(jnp.abs(lq2 - lq) > 1e-6)
    assert changed[1, 1] and changed[0, 1] and changed[1, 2] and not changed[4, 4]
    p = encode_checkerboard(enc, img, bg)
    assert p["logits"].shape == (6, 6, 3)


def _context_sensitive_encoder():
    """A tiny checkerboard encoder whose conditional head depends strongly on its context."""
    enc = TileEncoder(jax.random.PRNGKey(3), n_bands=1, pixel_channels=8, tile_channels=8, n_pixel=1,
                      n_tile=1, checkerboard=True)
    enc = eqx.tree_at(lambda e: e.context.weight, enc, enc.context.weight * 30.0)
    enc = eqx.tree_at(lambda e: e.head2_b.weight, enc, enc.head2_b.weight * 10.0)
    img = 1000.0 + 300.0 * jax.random.normal(jax.random.PRNGKey(4), (1, 12, 12))
    return enc, img, jnp.full_like(img, 1000.0)


def test_checkerboard_draws_are_ancestral():
    """Second-colour counts drawn by sample_checkerboard follow the conditional head given each draw's
    own first-colour catalog (checked against the head evaluated independently for every draw)."""
    from starmodels.tiles.encoder import colour_mask, context_maps, sample_checkerboard

    enc, img, bg = _context_sensitive_encoder()
    num = 3000
    n, locs, fl = sample_checkerboard(jax.random.PRNGKey(5), enc, img, bg, num)
    assert n.shape == (num, 6, 6) and locs.shape == (num, 6, 6, 2, 2) and fl.shape == (num, 6, 6, 2, 1)
    first = colour_mask(6, 6)
    feats = enc.features(img, bg)
    probs = jax.vmap(lambda a, b, c: jax.nn.softmax(split_params(
        enc.conditional_head(feats, context_maps(a, b, c, first)), 2, 1)["logits"], -1))(n, locs, fl)
    tile = (3, 2)                                                   # a second-colour tile
    assert not bool(first[tile])
    p_draw = np.asarray(probs[:, tile[0], tile[1]])                 # (num, 3) per-draw conditional
    assert p_draw[:, 0].std() > 0.05                                # the context matters: the test has power
    counts = np.asarray(n[:, tile[0], tile[1]])
    for k in range(3):
        expected, sd = p_draw[:, k].mean(), np.sqrt(p_draw[:, k].mean() * (1 - p_draw[:, k].mean()) / num)
        assert abs((counts == k).mean() - expected) < 4 * sd + 1e-3
    # first-colour tiles follow the marginal head
    marg = jax.nn.softmax(split_params(enc.head(feats), 2, 1)["logits"], -1)
    assert abs(float((n[:, 2, 2] == 0).mean()) - float(marg[2, 2, 0])) < 0.04


def test_checkerboard_context_follows_the_decision_threshold():
    from starmodels.tiles.encoder import colour_mask, encode_checkerboard, mode_catalog

    enc, img, bg = _context_sensitive_encoder()
    p_lo, p_hi = (encode_checkerboard(enc, img, bg, threshold=t) for t in (0.05, 0.95))
    first = np.asarray(colour_mask(6, 6))
    # first-colour tiles do not depend on the threshold; second-colour tiles see different catalogs
    assert np.allclose(np.asarray(p_lo["logits"])[first], np.asarray(p_hi["logits"])[first])
    n_lo = np.asarray(mode_catalog(p_lo, 2, 0.05)[0])[first]
    n_hi = np.asarray(mode_catalog(p_hi, 2, 0.95)[0])[first]
    assert (n_lo != n_hi).any()
    assert not np.allclose(np.asarray(p_lo["logits"])[~first], np.asarray(p_hi["logits"])[~first])


def test_truncated_flux_is_a_normalized_density_with_draws_and_median_inside_the_support(tmp_path):
    from scipy.stats import norm

    from starmodels.tiles.encoder import log_flux_sd, point_log_flux

    lo, hi = np.log(700.0), np.log(1e6)
    enc = TileEncoder(jax.random.PRNGKey(0), n_bands=2, pixel_channels=8, tile_channels=8, n_pixel=1,
                      n_tile=1, flux_bounds=(lo, hi))
    raw = np.zeros((1, 1, 3 + 3 * 8), np.float32)
    raw[..., :3] = [-20.0, 20.0, -20.0]                                   # one star, surely
    # set (k=1, slot 0): loc mean, loc log-sd, log-flux means (r below the prior's limit), log-flux log-sds
    raw[..., 3:11] = [0.0, 0.0, -2.0, -2.0, 6.3 - 8.0, 6.5 - 8.0, np.log(0.6), np.log(0.3)]
    p = enc.split(jnp.asarray(raw))
    assert p["flux_bounds"].shape == (1, 1, 3, 2)
    one, half = jnp.ones((1, 1), int), jnp.full((1, 1, 2, 2), 0.5)

    def lq(params, lf_r):
        return float(log_q(params, one, half, jnp.exp(jnp.array([[[[lf_r, 6.5], [0.0, 0.0]]]])), 2)[0, 0])

    # the truncated density is the normal's divided by its mass inside the support ...
    mass = norm.sf(lo, loc=6.3, scale=0.6)
    assert lq(split_params(jnp.asarray(raw), 2, 2), 6.5) - lq(p, 6.5) == pytest.approx(np.log(mass), abs=1e-3)
    # ... and integrates to 1 over it (log_q is a density in log flux)
    grid = np.linspace(lo, lo + 6.0, 3001)
    many = jax.jit(jax.vmap(lambda x: log_q(p, one, half, jnp.exp(jnp.array([[[[x, 6.5], [0.0, 0.0]]]])),
                                           2)[0, 0]))
    rel = np.exp(np.asarray(many(jnp.asarray(grid)), float) - lq(p, 6.5))
    pdf_at = norm.pdf(6.5, 6.3, 0.6) / mass
    assert np.trapezoid(rel, grid) * pdf_at == pytest.approx(1.0, rel=2e-3)
    # draws respect the support and pile up at the limit; the point flux is their median; the sd theirs
    _, _, f = sample_catalogs(jax.random.PRNGKey(1), p, 2, 20000)
    lf = np.log(np.asarray(f[:, 0, 0, 0, 0]))
    assert lf.min() >= lo - 1e-4 and np.mean(lf < lo + 0.1) > 0.1
    assert np.mean(lf < float(point_log_flux(p)[0, 0, 0, 0])) == pytest.approx(0.5, abs=0.015)
    assert float(log_flux_sd(p)[0, 0, 0, 0]) == pytest.approx(lf.std(), rel=0.03)
    assert float(point_log_flux(p)[0, 0, 0, 1]) == pytest.approx(6.5, abs=1e-5)   # i band: not truncated
    # the normalisation and its gradient stay finite when the mean is far outside the support
    from starmodels.tiles.encoder import _log_mass

    for a, b in ((8.0, 20.0), (-30.0, -9.0), (-2.0, 3.0)):
        g = jax.grad(lambda x, b=b: _log_mass(x, jnp.float32(b)))(jnp.float32(a))
        assert np.isfinite(float(_log_mass(jnp.float32(a), jnp.float32(b)))) and np.isfinite(float(g))
    assert float(_log_mass(jnp.float32(8.0), jnp.float32(20.0))) == pytest.approx(norm.logsf(8.0), rel=1e-5)
    # the bounds travel with the encoder file; bad bounds are refused
    save_encoder(tmp_path / "t.eqx", enc, {"model": "m2_starfield"})
    assert load_encoder(tmp_path / "t.eqx")[0].flux_bounds == pytest.approx((lo, hi))
    with pytest.raises(ValueError, match="flux_bounds"):
        TileEncoder(jax.random.PRNGKey(0), flux_bounds=(hi, lo))


def test_one_training_recipe_for_the_cli_the_benchmark_and_build():
    import argparse
    import inspect

    from starmodels.tiles.build import build_tile_model
    from starmodels.tiles.recipe import RECIPE, add_recipe_arguments, recipe_from_args

    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser)
    assert recipe_from_args(parser.parse_args([])) == {**RECIPE, "seed": 0}
    defaults = {k: p.default for k, p in inspect.signature(build_tile_model).parameters.items()}
    assert {k: defaults[k] for k in RECIPE} == RECIPE
    flipped = recipe_from_args(parser.parse_args(["--no-checkerboard", "--lr", "1e-3", "--steps", "10"]))
    assert flipped["checkerboard"] is False and flipped["learning_rate"] == 1e-3 and flipped["steps"] == 10
