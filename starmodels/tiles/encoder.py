"""The amortized encoder: image -> a factorized variational distribution over each tile's catalog.

Per tile, ``q(n)`` is categorical over 0..M stars; given ``n = k`` the ``k`` stars (brightest first in the
reference band) have independent logit-normal (row, col) positions inside the tile and normal
log-fluxes per band, with a separate set of parameters for every ``(k, slot)`` (so a tile with one
star and a tile with two brighter-and-fainter stars are described separately). The network is a small
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
                 checkerboard: bool = False):
        self.hyper = tuple(dict(n_bands=n_bands, tile_size=tile_size, max_sources=max_sources,
                                pixel_channels=pixel_channels, tile_channels=tile_channels, n_pixel=n_pixel,
                                n_tile=n_tile, checkerboard=checkerboard).items())
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


def split_params(p: jnp.ndarray, max_sources: int, n_bands: int, log_flux_bounds=None) -> dict:
    """Named views of the parameter array: ``logits`` (..., M+1); per (k, slot) set stacked on axis -2:
    ``loc_mean``, ``loc_logsd`` (..., S, 2), ``flux_mean``, ``flux_logsd`` (..., S, B) (natural log e-).

    ``log_flux_bounds`` = (lo, hi) clips the flux means to the prior's support (natural log electrons):
    on images unlike its training set the network can extrapolate far outside it."""
    m = max_sources
    logits = p[..., :m + 1]
    per = 4 + 2 * n_bands
    sets = p[..., m + 1:].reshape(*p.shape[:-1], len(slot_sets(m)), per)
    clip = lambda v: jnp.clip(v, LOG_SD_MIN, LOG_SD_MAX)
    flux_mean = sets[..., 4:4 + n_bands] + 8.0
    if log_flux_bounds is not None:
        flux_mean = jnp.clip(flux_mean, *log_flux_bounds)
    return {"logits": logits, "loc_mean": sets[..., 0:2], "loc_logsd": clip(sets[..., 2:4]),
            "flux_mean": flux_mean, "flux_logsd": clip(sets[..., 4 + n_bands:])}


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
    fluxes = jnp.where(on[..., None], jnp.exp(take(params["flux_mean"])), 0.0)
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
    lf = take(params["flux_mean"]) + jnp.exp(take(params["flux_logsd"])) * jax.random.normal(
        kf, (*shape, max_sources, params["flux_mean"].shape[-1]))
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
    m, nb = encoder.max_sources, encoder.n_bands
    marginal = log_q(split_params(encoder.head(feats), m, nb), n_sources, locs, fluxes, m)
    if not encoder.checkerboard:
        return marginal
    first = colour_mask(*n_sources.shape)
    ctx = context_maps(n_sources, locs, fluxes, first)
    cond = log_q(split_params(encoder.conditional_head(feats, ctx), m, nb), n_sources, locs, fluxes, m)
    return jnp.where(first, marginal, cond)


@eqx.filter_jit
def encode_checkerboard(encoder: TileEncoder, image, background, log_flux_bounds=None) -> dict:
    """Split parameters of every tile of one image (or a batch, leading axis): first colour marginal,
    second colour conditioned on the first colour's most probable catalog (the marginal head
    everywhere without a conditional head)."""
    if image.ndim == 4:
        return jax.vmap(lambda i, b: _encode_checkerboard(encoder, i, b, log_flux_bounds))(image, background)
    return _encode_checkerboard(encoder, image, background, log_flux_bounds)


def _encode_checkerboard(encoder: TileEncoder, image, background, log_flux_bounds=None) -> dict:
    feats = encoder.features(image, background)
    m, nb = encoder.max_sources, encoder.n_bands
    p = split_params(encoder.head(feats), m, nb, log_flux_bounds)
    if not encoder.checkerboard:
        return p
    n, locs, fluxes, _ = mode_catalog(p, m)
    first = colour_mask(*n.shape)
    raw = encoder.conditional_head(feats, context_maps(n, locs, fluxes, first))
    q = split_params(raw, m, nb, log_flux_bounds)
    pick = lambda a, b: jnp.where(first.reshape(first.shape + (1,) * (a.ndim - 2)), a, b)
    return jax.tree.map(pick, p, q)
