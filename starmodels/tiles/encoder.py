"""The amortized encoder: image -> a factorized variational distribution over each tile's catalog.

Per tile, ``q(n)`` is categorical over 0..M stars; given ``n = k`` the ``k`` stars (brightest first in the
reference band) have independent logit-normal (row, col) positions inside the tile and normal
log-fluxes per band, with a separate set of parameters for every ``(k, slot)`` (so a tile with one
star and a tile with two brighter-and-fainter stars are described separately). An encoder made with
``flux_bounds`` (the prior's support of the reference band's log flux) truncates that band's normal
to the support, so a faint star's distribution piles up at the prior's lower limit instead of
spilling below it (which biases counts of stars above a flux limit); its point flux is then the
truncated normal's median. The network is a small
fully convolutional CNN: a few 3x3 convolutions at pixel resolution, one stride-``tile_size``
convolution down to tiles, residual 3x3 convolutions between neighbouring tiles and a 1x1 head. It sees
``asinh((image - background) / sqrt(background))`` per band, so it is told the background.

Parameter layout per tile (last axis): ``M + 1`` count logits, then for each (k, slot) with
``1 <= k <= M``, ``slot < k``: loc mean (2), loc log-sd (2), log-flux mean (B), log-flux log-sd (B).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

LOG_SD_MIN, LOG_SD_MAX = -7.0, 3.0


def slot_sets(max_sources: int) -> list[tuple[int, int]]:
    """(k, slot) pairs in output order."""
    return [(k, s) for k in range(1, max_sources + 1) for s in range(k)]


def n_outputs(max_sources: int, n_bands: int) -> int:
    return max_sources + 1 + len(slot_sets(max_sources)) * (4 + 2 * n_bands)


class TileEncoder(eqx.Module):
    """CNN from a (B, H, W) image and background (electrons) to per-tile distribution parameters."""

    hyper: tuple = eqx.field(static=True)
    pixel_convs: list
    down: eqx.nn.Conv2d
    tile_convs: list
    head1: eqx.nn.Conv2d
    head2: eqx.nn.Conv2d
    context: eqx.nn.Conv2d | None
    head1_b: eqx.nn.Conv2d | None
    head2_b: eqx.nn.Conv2d | None
    tile_size: int = eqx.field(static=True)
    max_sources: int = eqx.field(static=True)
    n_bands: int = eqx.field(static=True)

    def __init__(self, key, *, n_bands: int = 2, tile_size: int = 2, max_sources: int = 2,
                 pixel_channels: int = 32, tile_channels: int = 64, n_pixel: int = 2, n_tile: int = 4,
                 checkerboard: bool = False, flux_bounds=None):
        if flux_bounds is not None:
            flux_bounds = tuple(float(v) for v in flux_bounds)
            if len(flux_bounds) != 2 or not flux_bounds[0] < flux_bounds[1]:
                raise ValueError(f"flux_bounds must be (lo, hi) natural-log electrons with lo < hi, got "
                                 f"{flux_bounds}")
        self.hyper = tuple(dict(n_bands=n_bands, tile_size=tile_size, max_sources=max_sources,
                                pixel_channels=pixel_channels, tile_channels=tile_channels, n_pixel=n_pixel,
                                n_tile=n_tile, checkerboard=checkerboard, flux_bounds=flux_bounds).items())
        keys = iter(jax.random.split(key, 6 + n_pixel + n_tile))
        chans = [n_bands] + [pixel_channels] * n_pixel
        self.pixel_convs = [eqx.nn.Conv2d(a, b, 3, padding=1, key=next(keys))
                            for a, b in zip(chans[:-1], chans[1:], strict=True)]
        self.down = eqx.nn.Conv2d(pixel_channels, tile_channels, tile_size + 1, stride=tile_size,
                                  padding=((tile_size // 2, tile_size // 2),) * 2, key=next(keys))
        self.tile_convs = [eqx.nn.Conv2d(tile_channels, tile_channels, 3, padding=1, key=next(keys))
                           for _ in range(n_tile)]
        self.head1 = eqx.nn.Conv2d(tile_channels, tile_channels, 1, key=next(keys))
        nout = n_outputs(max_sources, n_bands)
        out = eqx.nn.Conv2d(tile_channels, nout, 1, key=next(keys))
        self.head2 = eqx.tree_at(lambda c: c.weight, out, out.weight * 0.1)
        self.context = self.head1_b = self.head2_b = None
        if checkerboard:
            self.context = eqx.nn.Conv2d(context_channels(max_sources, n_bands), tile_channels, 3, padding=1,
                                         key=next(keys))
            self.head1_b = eqx.nn.Conv2d(tile_channels, tile_channels, 1, key=next(keys))
            out = eqx.nn.Conv2d(tile_channels, nout, 1, key=next(keys))
            self.head2_b = eqx.tree_at(lambda c: c.weight, out, out.weight * 0.1)
        self.tile_size, self.max_sources, self.n_bands = tile_size, max_sources, n_bands

    @property
    def flux_bounds(self) -> tuple[float, float] | None:
        """(lo, hi) natural-log electrons of the truncated reference-band flux, or None."""
        return dict(self.hyper).get("flux_bounds")

    def split(self, raw: jnp.ndarray, log_flux_bounds=None) -> dict:
        """:func:`split_params` of this encoder's raw output (with its truncation, if any)."""
        return split_params(raw, self.max_sources, self.n_bands, log_flux_bounds, truncation=self.flux_bounds)

    @property
    def checkerboard(self) -> bool:
        """Whether the encoder has the second (conditional) head of the two-colour scheme."""
        return self.context is not None

    def features(self, image: jnp.ndarray, background: jnp.ndarray) -> jnp.ndarray:
        """Tile-level features (C, nth, ntw) of one (B, H, W) image (electrons)."""
        x = jnp.arcsinh((image - background) / jnp.sqrt(jnp.clip(background, 1.0, None)))
        for conv in self.pixel_convs:
            x = jax.nn.gelu(conv(x))
        x = jax.nn.gelu(self.down(x))
        for conv in self.tile_convs:
            x = x + jax.nn.gelu(conv(x))
        return x

    def head(self, feats: jnp.ndarray) -> jnp.ndarray:
        """Marginal per-tile parameters (nth, ntw, n_outputs) from features."""
        return jnp.moveaxis(self.head2(jax.nn.gelu(self.head1(feats))), 0, -1)

    def conditional_head(self, feats: jnp.ndarray, context: jnp.ndarray) -> jnp.ndarray:
        """Per-tile parameters given the catalogs of the other colour's tiles (:func:`context_maps`)."""
        x = feats + self.context(context)
        return jnp.moveaxis(self.head2_b(jax.nn.gelu(self.head1_b(x))), 0, -1)

    def __call__(self, image: jnp.ndarray, background: jnp.ndarray) -> jnp.ndarray:
        """Marginal per-tile parameters (nth, ntw, n_outputs) for one (B, H, W) image; H, W multiples
        of the tile."""
        return self.head(self.features(image, background))


def colour_mask(nth: int, ntw: int) -> jnp.ndarray:
    """(nth, ntw) bool, True on the first colour of the checkerboard (``(i + j)`` even)."""
    return (jnp.arange(nth)[:, None] + jnp.arange(ntw)[None, :]) % 2 == 0


def context_channels(max_sources: int, n_bands: int) -> int:
    return 1 + max_sources + max_sources * 3


def context_maps(n_sources, locs, fluxes, given) -> jnp.ndarray:
    """Channels (K, nth, ntw) describing the catalogs of the tiles where ``given`` is True (zeros
    elsewhere): the mask, one-hot counts 1..M, and per slot (row, col) offsets from the tile centre and
    the scaled log reference flux."""
    m = locs.shape[-2]
    on = (jnp.arange(m) < n_sources[..., None]) & given[..., None]
    count = jnp.stack([(n_sources == k) & given for k in range(1, m + 1)], -1)
    lf = jnp.where(on, (jnp.log(jnp.clip(fluxes[..., 0], 1.0, None)) - 8.0) / 3.0, 0.0)
    off = jnp.where(on[..., None], locs - 0.5, 0.0)
    per_slot = jnp.concatenate([off, lf[..., None]], -1).reshape(*n_sources.shape, 3 * m)
    ch = jnp.concatenate([given[..., None], count, per_slot], -1).astype(jnp.float32)
    return jnp.moveaxis(ch, -1, 0)


def split_params(p: jnp.ndarray, max_sources: int, n_bands: int, log_flux_bounds=None,
                 truncation=None) -> dict:
    """Named views of the parameter array: ``logits`` (..., M+1); per (k, slot) set stacked on axis -2:
    ``loc_mean``, ``loc_logsd`` (..., S, 2), ``flux_mean``, ``flux_logsd`` (..., S, B) (natural log e-).

    ``log_flux_bounds`` = (lo, hi) clips the flux means to the prior's support (natural log electrons):
    on images unlike its training set the network can extrapolate far outside it. ``truncation`` =
    (lo, hi) natural-log electrons: the reference band's log flux is a normal truncated to it (added as
    ``flux_bounds`` (..., S, 2))."""
    m = max_sources
    logits = p[..., :m + 1]
    per = 4 + 2 * n_bands
    sets = p[..., m + 1:].reshape(*p.shape[:-1], len(slot_sets(m)), per)
    clip = lambda v: jnp.clip(v, LOG_SD_MIN, LOG_SD_MAX)
    flux_mean = sets[..., 4:4 + n_bands] + 8.0
    if log_flux_bounds is not None:
        flux_mean = jnp.clip(flux_mean, *log_flux_bounds)
    out = {"logits": logits, "loc_mean": sets[..., 0:2], "loc_logsd": clip(sets[..., 2:4]),
           "flux_mean": flux_mean, "flux_logsd": clip(sets[..., 4 + n_bands:])}
    if truncation is not None:
        out["flux_bounds"] = jnp.broadcast_to(jnp.asarray(truncation, p.dtype), (*flux_mean.shape[:-1], 2))
    return out


def _standardized_bounds(mean, logsd, bounds):
    """The truncation bounds of the reference band in units of its normal: (a, b), each (..., S)."""
    sd = jnp.exp(logsd[..., 0])
    return (bounds[..., 0] - mean[..., 0]) / sd, (bounds[..., 1] - mean[..., 0]) / sd


def _log_mass(a, b):
    """log(Phi(b) - Phi(a)), stable in both tails."""
    from jax.scipy.special import log_ndtr

    right = a > 0                     # the support lies right of the mean: use the upper tail
    # each branch gets harmless inputs where it is not used, so its gradient there is finite too
    au, bu = jnp.where(right, -1.0, a), jnp.where(right, 1.0, b)
    al, bl = jnp.where(right, a, 1.0), jnp.where(right, b, 2.0)
    upper = log_ndtr(bu) + jnp.log(-jnp.expm1(log_ndtr(au) - log_ndtr(bu)))
    lower = log_ndtr(-al) + jnp.log(-jnp.expm1(log_ndtr(-bl) - log_ndtr(-al)))
    return jnp.where(right, lower, upper)


def log_flux_sd(params: dict) -> jnp.ndarray:
    """Standard deviation of the log fluxes (..., S, B), of the truncated normal for a truncated band."""
    from jax.scipy.special import ndtr

    sd = jnp.exp(params["flux_logsd"])
    if "flux_bounds" not in params:
        return sd
    a, b = _standardized_bounds(params["flux_mean"], params["flux_logsd"], params["flux_bounds"])
    z = jnp.clip(ndtr(b) - ndtr(a), 1e-30, None)
    pa, pb = jnp.exp(-0.5 * a**2) / jnp.sqrt(2 * jnp.pi), jnp.exp(-0.5 * b**2) / jnp.sqrt(2 * jnp.pi)
    var = 1 + (jnp.where(jnp.isfinite(a), a * pa, 0.0) - jnp.where(jnp.isfinite(b), b * pb, 0.0)) / z \
        - ((pa - pb) / z) ** 2
    return sd.at[..., 0].set(sd[..., 0] * jnp.sqrt(jnp.clip(var, 0.0, None)))


def point_log_flux(params: dict) -> jnp.ndarray:
    """Point estimate of the log fluxes (..., S, B): the normal's mean, or for a truncated reference band
    the truncated normal's median."""
    from jax.scipy.special import ndtr, ndtri

    mean = params["flux_mean"]
    if "flux_bounds" not in params:
        return mean
    a, b = _standardized_bounds(mean, params["flux_logsd"], params["flux_bounds"])
    med = mean[..., 0] + jnp.exp(params["flux_logsd"][..., 0]) * ndtri(0.5 * (ndtr(a) + ndtr(b)))
    med = jnp.clip(med, params["flux_bounds"][..., 0], params["flux_bounds"][..., 1])
    return mean.at[..., 0].set(med)


def set_index(max_sources: int) -> np.ndarray:
    """(M+1, M) index of the parameter set used by slot ``s`` when the tile has ``k`` stars (0 unused)."""
    idx = np.zeros((max_sources + 1, max_sources), int)
    for i, (k, s) in enumerate(slot_sets(max_sources)):
        idx[k, s] = i
    return idx


def _normal_logpdf(x, mean, logsd):
    return -0.5 * ((x - mean) * jnp.exp(-logsd)) ** 2 - logsd - 0.5 * jnp.log(2 * jnp.pi)


def log_q(params: dict, n_sources, locs, fluxes, max_sources: int) -> jnp.ndarray:
    """Log density of true tile catalogs under the encoder's distribution, per tile (..., nth, ntw).

    Args:
        params: from :func:`split_params`; n_sources (..., nth, ntw); locs (..., nth, ntw, M, 2) in
            (0, 1); fluxes (..., nth, ntw, M, B) electrons, brightest first.
    """
    m = max_sources
    lp = jax.nn.log_softmax(params["logits"], axis=-1)
    lp_n = jnp.take_along_axis(lp, n_sources[..., None], axis=-1)[..., 0]
    idx = jnp.asarray(set_index(m))[n_sources]                                   # (..., M)
    take = lambda a: jnp.take_along_axis(a, idx[..., None], axis=-2)               # (..., M, d)
    u = jnp.clip(locs, 1e-4, 1 - 1e-4)
    z = jnp.log(u) - jnp.log1p(-u)
    lp_loc = _normal_logpdf(z, take(params["loc_mean"]), take(params["loc_logsd"])) - jnp.log(u * (1 - u))
    lp_loc = lp_loc.sum(-1)
    lf = jnp.log(jnp.clip(fluxes, 1e-3, None))
    lp_flux = _normal_logpdf(lf, take(params["flux_mean"]), take(params["flux_logsd"])).sum(-1)
    if "flux_bounds" in params:
        ab = _standardized_bounds(take(params["flux_mean"]), take(params["flux_logsd"]),
                                  take(params["flux_bounds"]))
        lp_flux = lp_flux - _log_mass(*ab)
    on = jnp.arange(m) < n_sources[..., None]
    return lp_n + jnp.where(on, lp_loc + lp_flux, 0.0).sum(-1)


def mode_catalog(params: dict, max_sources: int, threshold: float | None = None):
    """A point catalog per tile: the count, and for it the median position and flux of each star.

    The count is the most probable one, or with ``threshold`` the number ``k`` of stars whose
    existence probability ``P(n >= k)`` is at least ``threshold`` (a decision rule that trades
    completeness for purity; 0.5 is close to the mode).

    Returns:
        ``(n_sources, locs, fluxes, p_count)``: (..., nth, ntw) int; (..., M, 2) tile fractions;
        (..., M, B) electrons; (..., M+1) count probabilities.
    """
    probs = jax.nn.softmax(params["logits"], axis=-1)
    if threshold is None:
        n = jnp.argmax(probs, axis=-1)
    else:
        tail = jnp.cumsum(probs[..., ::-1], axis=-1)[..., ::-1]                  # P(n >= k), k = 0..M
        n = (tail[..., 1:] >= threshold).sum(-1)
    idx = jnp.asarray(set_index(max_sources))[n]
    take = lambda a: jnp.take_along_axis(a, idx[..., None], axis=-2)
    on = jnp.arange(max_sources) < n[..., None]
    locs = jnp.where(on[..., None], jax.nn.sigmoid(take(params["loc_mean"])), 0.0)
    fluxes = jnp.where(on[..., None], jnp.exp(take(point_log_flux(params))), 0.0)
    return n, locs, fluxes, probs


def sample_catalogs(key, params: dict, max_sources: int, num: int):
    """``num`` catalogs drawn from the encoder's distribution: (num, ..., nth, ntw) counts, locs, fluxes."""
    kn, kl, kf = jax.random.split(key, 3)
    shape = (num, *params["logits"].shape[:-1])
    n = jax.random.categorical(kn, params["logits"], shape=shape)
    idx = jnp.asarray(set_index(max_sources))[n]
    take = lambda a: jnp.take_along_axis(jnp.broadcast_to(a, (num, *a.shape)), idx[..., None], axis=-2)
    eps = jax.random.normal(kl, (*shape, max_sources, 2))
    z = take(params["loc_mean"]) + jnp.exp(take(params["loc_logsd"])) * eps
    eps_f = jax.random.normal(kf, (*shape, max_sources, params["flux_mean"].shape[-1]))
    if "flux_bounds" in params:
        a, b = _standardized_bounds(take(params["flux_mean"]), take(params["flux_logsd"]),
                                    take(params["flux_bounds"]))
        eps_f = eps_f.at[..., 0].set(jax.random.truncated_normal(jax.random.fold_in(kf, 1), a, b))
    lf = take(params["flux_mean"]) + jnp.exp(take(params["flux_logsd"])) * eps_f
    on = jnp.arange(max_sources) < n[..., None]
    return n, jnp.where(on[..., None], jax.nn.sigmoid(z), 0.0), jnp.where(on[..., None], jnp.exp(lf), 0.0)


FORMAT = "starmodels-tile-encoder/1"


class EncoderFileError(ValueError):
    """An encoder file that is not one, is damaged, or was made for another model or version."""


def save_encoder(path, encoder: TileEncoder, meta: dict) -> None:
    """Write the encoder atomically: one JSON header line (format, hyperparameters, ``meta``: model name,
    prior, simulator settings, command, versions) followed by the weights (equinox serialisation)."""
    import json

    from starmodels.atomic import atomic_path

    header = {"format": FORMAT, "hyper": dict(encoder.hyper), "meta": meta}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write((json.dumps(header, default=float) + "\n").encode())
        eqx.tree_serialise_leaves(f, encoder)


def read_header(path) -> dict:
    """The JSON header of an encoder file (clear error if it is not one)."""
    import json

    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as e:
        raise EncoderFileError(f"{path} is not a starmodels tile-encoder file ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise EncoderFileError(f"{path} is not a {FORMAT} file (format {header.get('format')!r})"
                               if isinstance(header, dict) else f"{path} is not a {FORMAT} file")
    return header


def load_encoder(path, model: str | None = None) -> tuple[TileEncoder, dict]:
    """Read an encoder file; with ``model``, refuse a file made for another model. Returns
    ``(encoder, header)``."""
    header = read_header(path)
    made_for = header.get("meta", {}).get("model")
    if model is not None and made_for != model:
        raise EncoderFileError(f"{path} holds an encoder for model {made_for!r}, not {model!r}")
    template = TileEncoder(jax.random.PRNGKey(0), **header["hyper"])
    with open(path, "rb") as f:
        f.readline()
        try:
            enc = eqx.tree_deserialise_leaves(f, template)
        except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
            raise EncoderFileError(f"{path}: the weights do not load ({type(e).__name__}: {e})") from None
    return enc, header


def checkerboard_log_q(encoder: TileEncoder, image, background, n_sources, locs, fluxes) -> jnp.ndarray:
    """Per-tile log q of the true catalog of one image under the two-colour scheme: first-colour tiles
    under the marginal head, second-colour tiles under the conditional head given the true catalogs
    of the first colour. Without a conditional head, the marginal log q of every tile."""
    feats = encoder.features(image, background)
    m = encoder.max_sources
    marginal = log_q(encoder.split(encoder.head(feats)), n_sources, locs, fluxes, m)
    if not encoder.checkerboard:
        return marginal
    first = colour_mask(*n_sources.shape)
    ctx = context_maps(n_sources, locs, fluxes, first)
    cond = log_q(encoder.split(encoder.conditional_head(feats, ctx)), n_sources, locs, fluxes, m)
    return jnp.where(first, marginal, cond)


@eqx.filter_jit
def encode_checkerboard(encoder: TileEncoder, image, background, log_flux_bounds=None,
                        threshold: float | None = None) -> dict:
    """Split parameters of every tile of one image (or a batch, leading axis): first colour marginal,
    second colour conditioned on the first colour's point catalog (the marginal head everywhere
    without a conditional head).

    ``threshold`` is the decision rule of :func:`mode_catalog` that makes the first colour's catalog,
    so with the same threshold for the final catalog the second colour is conditioned on exactly the
    stars the first colour reports (a star the first colour does not report can still be claimed by
    its neighbour). None: the most probable count.
    """
    if image.ndim == 4:
        return jax.vmap(lambda i, b: _encode_checkerboard(encoder, i, b, log_flux_bounds, threshold))(
            image, background)
    return _encode_checkerboard(encoder, image, background, log_flux_bounds, threshold)


def _encode_checkerboard(encoder: TileEncoder, image, background, log_flux_bounds=None,
                         threshold=None) -> dict:
    feats = encoder.features(image, background)
    m = encoder.max_sources
    p = encoder.split(encoder.head(feats), log_flux_bounds)
    if not encoder.checkerboard:
        return p
    n, locs, fluxes, _ = mode_catalog(p, m, threshold)
    first = colour_mask(*n.shape)
    raw = encoder.conditional_head(feats, context_maps(n, locs, fluxes, first))
    q = encoder.split(raw, log_flux_bounds)
    pick = lambda a, b: jnp.where(first.reshape(first.shape + (1,) * (a.ndim - 2)), a, b)
    return jax.tree.map(pick, p, q)


@eqx.filter_jit
def sample_checkerboard(key, encoder: TileEncoder, image, background, num: int, log_flux_bounds=None,
                        chunk: int = 64):
    """``num`` catalogs of one (B, H, W) image (electrons) drawn ancestrally under the two-colour scheme:
    the first colour's tiles from the marginal head, then for each draw the second colour's tiles from
    the conditional head given that draw's first-colour catalogs (``chunk`` draws at a time). Without a
    conditional head, independent draws from the marginal head.

    Returns:
        ``(n_sources, locs, fluxes)``: (num, nth, ntw) int; (num, nth, ntw, M, 2) tile fractions;
        (num, nth, ntw, M, B) electrons.
    """
    feats = encoder.features(image, background)
    m = encoder.max_sources
    p = encoder.split(encoder.head(feats), log_flux_bounds)
    k1, k2 = jax.random.split(key)
    n1, l1, f1 = sample_catalogs(k1, p, m, num)
    if not encoder.checkerboard:
        return n1, l1, f1
    first = colour_mask(*n1.shape[1:])

    def second(args):
        k, n, locs, fluxes = args
        raw = encoder.conditional_head(feats, context_maps(n, locs, fluxes, first))
        q = encoder.split(raw, log_flux_bounds)
        n2, l2, f2 = sample_catalogs(k, q, m, 1)
        return n2[0], l2[0], f2[0]

    n2, l2, f2 = jax.lax.map(second, (jax.random.split(k2, num), n1, l1, f1), batch_size=chunk)
    pick = lambda a, b: jnp.where(first.reshape(first.shape + (1,) * (a.ndim - 3)), a, b)
    return pick(n1, n2), pick(l1, l2), pick(f1, f2)
