"""Amortized VI: an encoder network maps each image to its variational posterior.

Train once on a set of images (maximising the ELBO with reparameterised
gradients over minibatches, through numpyro's SVI and ``eqx_module``), then
:meth:`Amortizer.posterior_for` is one forward pass per batch of new images.
Works for any model whose data are independent blocks (images) with no
shared site (``model.blocks()``, e.g. an :class:`~starmodels.plate.ImagePlate`);
the guide is a Gaussian in each image's unconstrained latent space.

The raw encoder is fast but only as good as the network: by default
``posterior_for`` corrects it by importance sampling, with the encoder as
the proposal: ``num_proposals`` draws per image are weighted by
p(z, image) / q(z | image), the weights Pareto-smoothed (PSIS), and
``num_draws`` draws resampled by weight. PSIS k-hat per image says when the
correction cannot be trusted (k > 0.7).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.module import eqx_module
from numpyro.infer import SVI
from numpyro.infer.util import potential_energy
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from starmodels.atomic import atomic_path
from starmodels.diagnostics import KHAT_BAD
from starmodels.infer import options as check
from starmodels.infer.batched import batched_map
from starmodels.infer.compiled import Bound, cached
from starmodels.infer.latents import physical_values
from starmodels.infer.registry import Option, RunResult, register
from starmodels.infer.svi import OrderedTraceELBO
from starmodels.infer.timing import stopwatch
from starmodels.protocol import blocks_of, labels_of
from starmodels.results import Posterior, build_idata

log = logging.getLogger("starmodels")
_FORMAT = "starmodels-encoder-1"


class Encoder(eqx.Module):
    """MLP from one image (ny, nx) to the mean and log sd of ``dim`` latent values.

    Counts go through the Anscombe transform ``sqrt(counts + 3/8)`` (Poisson
    noise becomes ~unit variance) and are standardised per pixel with the
    training set's mean and sd (held fixed).
    """

    mlp: eqx.nn.MLP
    centre: jnp.ndarray
    spread: jnp.ndarray
    dim: int = eqx.field(static=True)

    def __init__(self, shape, dim: int, *, width: int = 128, depth: int = 2, key, images=None):
        self.dim = int(dim)
        self.mlp = eqx.nn.MLP(math.prod(shape), 2 * self.dim, width, depth, activation=jax.nn.gelu,
                              key=key)
        if images is None:
            self.centre, self.spread = jnp.zeros(shape), jnp.ones(shape)
        else:
            a = jnp.sqrt(jnp.clip(jnp.asarray(images), 0.0) + 0.375)
            self.centre, self.spread = a.mean(0), jnp.maximum(a.std(0), 1e-3)

    def __call__(self, image):
        """Mean and log sd (each ``(dim,)``) of the image's unconstrained latents."""
        a = jnp.sqrt(jnp.clip(image, 0.0) + 0.375)
        x = (a - jax.lax.stop_gradient(self.centre)) / jax.lax.stop_gradient(self.spread)
        out = self.mlp(x.ravel())
        return out[: self.dim], out[self.dim:]


def _blocks(model):
    """The model's block structure, checked: independent blocks, nothing shared."""
    blocks = blocks_of(model)
    if blocks is None:
        raise TypeError(f"amortized VI needs a model whose data are independent images (blocks), e.g. "
                        f"an ImagePlate; {model.name!r} declares no blocks")
    if blocks.shared:
        raise ValueError(f"amortized VI needs every sampled site to be per image; {list(blocks.shared)} "
                         "are shared by all images")
    return blocks


def _latents(model):
    """Per latent site of one image: (latent name, support, event shape), in program order."""
    one = _blocks(model).resize(1)
    return [(s.latent, s.support, tuple(s.shape[1:])) for s in one.sites().values()]


def _split(z, latents):
    """Flat per-image latent vectors (..., dim) -> {site: (..., *event)}."""
    out, i = {}, 0
    for site, _, shape in latents:
        size = math.prod(shape)
        out[site] = z[..., i:i + size].reshape(z.shape[:-1] + shape)
        i += size
    return out


def _q(loc, log_scale, latents):
    """Per site: the guide's Gaussian in the unconstrained space, as numpyro distributions."""
    locs, scales = _split(loc, latents), _split(jnp.exp(log_scale), latents)
    out = {}
    for site, support, shape in latents:
        base = dist.Normal(locs[site], scales[site]).to_event(len(shape))
        out[site] = dist.TransformedDistribution(base, dist.biject_to(support)) \
            if support is not dist.constraints.real else base
    return out


class _Proposal:
    """Compiled programs for one image model: physical values and log weights of encoder draws."""

    def __init__(self, bound: Bound, latents):
        def to_physical(z, arrays):  # z: (draws, dim) of one image -> physical per draw
            model = bound.model(arrays)
            return batched_map(lambda x: physical_values(model, {k: v[None] for k, v in
                                                                 _split(x, latents).items()}), z)

        def log_weights(img, z, loc, scale, arrays):  # one image: z (draws, dim)
            log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
            u = lambda x: potential_energy(bound.program, (arrays,), {"data": img[None]},  # noqa: E731
                                           {k: v[None] for k, v in _split(x, latents).items()})
            return -batched_map(u, z) - log_q

        self.physical = jax.jit(lambda zs, arrays: jax.lax.map(lambda z: to_physical(z, arrays), zs))
        self.log_weights = jax.jit(lambda imgs, zs, locs, scales, arrays: jax.lax.map(
            lambda a: log_weights(*a, arrays), (imgs, zs, locs, scales)))


@dataclass
class Amortizer:
    """A trained encoder for ``model``; ``posterior_for(images)`` gives posteriors without refitting."""

    model: object
    encoder: Encoder
    meta: dict = field(default_factory=dict)

    @property
    def latents(self):
        """Per latent site of one image: (latent name, support, event shape)."""
        return _latents(self.model)

    def encode(self, images, batch: int = 256):
        """Variational mean and log sd (n, dim) of every image's unconstrained latents."""
        blocks = _blocks(self.model)
        imgs = jnp.asarray(blocks.resize(len(images)).check_data(images))
        fwd = _forward(self.encoder)
        parts = [fwd(_pad(imgs[i:i + batch], batch)) for i in range(0, len(imgs), batch)]
        loc = jnp.concatenate([p[0] for p in parts])[: len(imgs)]
        return loc, jnp.concatenate([p[1] for p in parts])[: len(imgs)]

    def posterior_for(self, images, num_draws: int = 4000, seed: int = 0, batch: int = 256,
                      importance: bool = True, num_proposals: int = 16000) -> Posterior:
        """Posterior of each image's parameters: draws (1 chain, ``num_draws``, image) in physical units.

        ``importance`` (default): the encoder is the proposal of a PSIS
        importance sampler with ``num_proposals`` draws per image, and
        ``num_draws`` draws are resampled by the smoothed weights. Either way
        ``meta["khat_per_image"]`` holds each image's Pareto k-hat of the
        encoder against the exact posterior and ``meta["khat"]`` the worst.
        """
        for name, value in (("num_draws", num_draws), ("batch", batch), ("num_proposals", num_proposals)):
            if (msg := check.positive_int(value)) is not None:
                raise ValueError(f"{name} {msg}")
        if (msg := check.seed_value(seed)) is not None:
            raise ValueError(f"seed {msg}")
        images = np.asarray(images, float)
        blocks = _blocks(self.model)
        plate = blocks.resize(len(images))
        clean = jnp.asarray(plate.check_data(images))
        one = blocks.resize(1)
        bound = Bound(one)
        latents = self.latents
        prop, _ = cached("amortized", (bound.key, tuple(s for s, _, _ in latents)),
                         lambda: _Proposal(bound, latents))
        with stopwatch() as t_enc:
            loc, log_scale = jax.block_until_ready(self.encode(images, batch))
        k_prop = jax.random.PRNGKey(seed)
        n_prop = num_proposals if importance else num_draws
        scale = jnp.exp(log_scale)
        rng = np.random.default_rng([seed, 5])
        parts, smoothed, khat = [], [], []
        with stopwatch() as t_w:
            for i in range(0, len(images), batch):  # memory: batch x num_proposals latent vectors at a time
                sl = slice(i, i + batch)
                eps = jax.random.normal(jax.random.fold_in(k_prop, i),
                                        (len(clean[sl]), n_prop, loc.shape[1]))
                z = loc[sl, None] + scale[sl, None] * eps  # (images, draws, dim) unconstrained
                log_w = np.asarray(prop.log_weights(clean[sl], z, loc[sl], scale[sl], bound.arrays), float)
                sm_w, kh = _psis(log_w)
                smoothed.append(sm_w)
                khat.append(kh)
                if importance:
                    picks = np.stack([rng.choice(n_prop, num_draws, p=np.exp(w)) for w in sm_w])
                    z = jnp.take_along_axis(z, jnp.asarray(picks)[..., None], axis=1)
                parts.append(prop.physical(z, bound.arrays))  # per image: (draws, 1, ...)
            parts = jax.block_until_ready(parts)
        smoothed, khat = np.concatenate(smoothed), np.concatenate(khat)
        draws = {k: np.moveaxis(np.concatenate([np.asarray(p[k]) for p in parts])[:, :, 0], 0, 1)[None]
                 for k in parts[0]}
        ess = np.exp(-np.logaddexp.reduce(2 * smoothed, axis=1)) if importance else None
        meta = {"method": "amortized", "model": self.model.name, "seed": seed, "num_draws": num_draws,
                "images": len(images), "importance": importance, "num_proposals": n_prop,
                "encode_seconds": t_enc.run, "weight_seconds": t_w.run,
                "compile_seconds": t_enc.compile + t_w.compile, "run_seconds": t_enc.run + t_w.run,
                "images_per_second": len(images) / max(t_enc.run, 1e-9), "labels": labels_of(plate),
                "khat": float(np.max(khat)), "khat_per_image": khat.tolist(),
                "khat_median": float(np.median(khat)), "encoder": self.meta}
        if ess is not None:
            meta["importance_ess_per_image"] = ess.tolist()
        bad = int(np.sum(khat > KHAT_BAD))
        if bad:
            log.warning("amortized VI: %d of %d images have PSIS k-hat > %.1f: the encoder is too far "
                        "from their posterior%s", bad, len(images), KHAT_BAD,
                        "; their importance-corrected draws are unreliable" if importance else "")
        idata = build_idata(draws, labels_of(plate), observed=images)
        return Posterior(idata=idata, meta=meta)

    def save(self, path) -> Path:
        """One file: a JSON line (format, model, latent sites, network shape) then the weights."""
        path = Path(path)
        head = {"format": _FORMAT, "model": self.model.name, "sites": [s for s, _, _ in self.latents],
                "shape": list(_image_shape(self.model)), "dim": self.encoder.dim,
                "width": self.encoder.mlp.width_size, "depth": self.encoder.mlp.depth,
                "meta": self.meta}
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write((json.dumps(head) + "\n").encode())
            eqx.tree_serialise_leaves(f, self.encoder)
        return path

    @classmethod
    def load(cls, path, model) -> Amortizer:
        """Read an encoder saved by :meth:`save` for ``model`` (which must have the same latent sites)."""
        path = Path(path)
        sites, shape = [s for s, _, _ in _latents(model)], _image_shape(model)  # the model first
        try:
            with open(path, "rb") as f:
                line = f.readline()
                try:
                    head = json.loads(line.decode())
                except (ValueError, UnicodeDecodeError):
                    head = None
                if not isinstance(head, dict) or head.get("format") != _FORMAT:
                    if line.startswith(b'{"format": "' + _FORMAT.encode()) and not line.endswith(b"\n"):
                        raise ValueError(f"{path} is truncated: its header line is incomplete")
                    raise ValueError(f"{path} is not a starmodels encoder file (no '{_FORMAT}' header line)")
                if head["sites"] != sites or tuple(head["shape"]) != shape:
                    raise ValueError(f"encoder in {path} was trained for sites {head['sites']} on "
                                     f"{head['shape']} images; this model has {sites} on {list(shape)}")
                template = Encoder(tuple(head["shape"]), head["dim"], width=head["width"],
                                   depth=head["depth"], key=jax.random.PRNGKey(0))
                try:
                    encoder = eqx.tree_deserialise_leaves(f, template)
                except Exception as err:  # equinox/numpy raise several types on short or odd files
                    raise ValueError(f"{path}: the encoder weights are incomplete or corrupt "
                                     f"({type(err).__name__}); the file may be truncated") from None
        except KeyError as err:
            raise ValueError(f"{path}: the encoder header lacks {err}") from None
        return cls(model=model, encoder=encoder, meta=head["meta"])


def _image_shape(model) -> tuple:
    """Shape of one image (block) of ``model``'s data."""
    return tuple(_blocks(model).resize(1).shape[1:])


def _psis(log_w: np.ndarray):
    """PSIS-smoothed normalised log weights (n, draws) and k-hat per image (n,)."""
    smoothed, khat = az.psislw(log_w)
    return np.asarray(smoothed), np.atleast_1d(np.asarray(khat, float))


def _pad(x, n):
    """Pad a batch to ``n`` rows (repeating the last) so one compiled forward pass serves all."""
    return x if len(x) == n else jnp.concatenate([x, jnp.repeat(x[-1:], n - len(x), 0)])


@eqx.filter_jit
def _apply(encoder, images):
    return jax.vmap(encoder)(images)


def _forward(encoder):
    return lambda images: _apply(encoder, images)


def train_amortized(model, images, *, num_steps: int = 5000, batch: int = 64, lr: float = 1e-3,
                    width: int = 128, depth: int = 2, num_particles: int = 1, chunk: int = 250,
                    seed: int = 0, progress: bool = True, **old) -> Amortizer:
    """Train an encoder on ``images`` (N, ny, nx) by maximising the ELBO of random minibatches.

    Adam with cosine decay over ``num_steps``; ``batch`` images per step. The
    ELBO per image is recorded every ``chunk`` steps in ``meta["elbo_trace"]``.
    Train on many simulated images (e.g. from the prior) and apply to new
    ones; the encoder can only be as good as the training set is typical.
    """
    if "steps" in old:
        import warnings

        if num_steps != 5000:
            raise ValueError("train_amortized: 'steps' and 'num_steps' are the same option; give only "
                             "'num_steps'")
        warnings.warn("option 'steps' is now called 'num_steps'", FutureWarning, stacklevel=2)
        num_steps = old.pop("steps")
    if old:
        raise TypeError(f"train_amortized got unknown options {sorted(old)}")
    problems = [f"{k} {m}" for k, v in (("num_steps", num_steps), ("batch", batch), ("chunk", chunk),
                                         ("num_particles", num_particles), ("width", width),
                                         ("depth", depth)) if (m := check.positive_int(v))]
    problems += [f"lr {m}" for m in [check.positive_float(lr)] if m]
    problems += [f"seed {m}" for m in [check.seed_value(seed)] if m]
    if problems:
        raise ValueError("train_amortized: " + "; ".join(problems))
    blocks = _blocks(model)
    latents = _latents(model)
    n = len(images)
    data = jnp.asarray(blocks.resize(n).check_data(images))
    batch = min(batch, n)
    key = jax.random.PRNGKey(seed)
    k_net, k_svi, k_batch = jax.random.split(key, 3)
    dim = sum(math.prod(s) for _, _, s in latents)
    encoder = Encoder(data.shape[1:], dim, width=width, depth=depth, key=k_net, images=data)
    plate = blocks.resize(batch)

    def guide(data=None):
        net = eqx_module("encoder", encoder)
        loc, log_scale = jax.vmap(net)(data)
        qs = _q(loc, log_scale, latents)
        with numpyro.plate(blocks.plate, data.shape[0], dim=-1):
            for site, _, _ in latents:
                numpyro.sample(site, qs[site])

    opt = optax.chain(optax.clip_by_global_norm(10.0),
                      optax.adam(optax.cosine_decay_schedule(lr, num_steps, 0.05)))
    svi = SVI(plate, guide, optax_to_numpyro(opt), OrderedTraceELBO(num_particles=num_particles))

    @jax.jit
    def run_chunk(state, k):
        def step(st, kk):
            idx = jax.random.choice(kk, n, (batch,), replace=False)
            return svi.update(st, data=data[idx])

        return jax.lax.scan(step, state, jax.random.split(k, chunk))

    trace = []
    with stopwatch() as t_run:
        state = jax.jit(lambda k, d: svi.init(k, data=d))(k_svi, data[:batch])
        bar = tqdm(total=num_steps, desc="amortized VI", disable=not progress)
        done = 0
        while done < num_steps:
            state, losses = run_chunk(state, jax.random.fold_in(k_batch, done))
            trace.append(float(losses.mean()) / batch)
            done += chunk
            bar.update(chunk)
            bar.set_postfix(elbo_per_image=f"{-trace[-1]:.5g}")
        bar.close()
        jax.block_until_ready(state)
    trained = eqx.combine(svi.get_params(state)["encoder$params"],
                          eqx.partition(encoder, eqx.is_inexact_array)[1])
    meta = {"train_images": n, "num_steps": done, "batch": batch, "lr": lr, "seed": seed,
            "num_particles": num_particles, "width": width, "depth": depth,
            "elbo_trace": [-v for v in trace], "final_elbo_per_image": -trace[-1],
            "train_seconds": t_run.run, "compile_seconds": t_run.compile}
    log.info("amortized VI: %d steps on %d images in %.1f s, ELBO/image %.2f", done, n, t_run.run,
             -trace[-1])
    return Amortizer(model=model, encoder=trained, meta=meta)


def _amortizer_check(v):
    return None if isinstance(v, Amortizer) else f"must be a trained Amortizer, got {type(v).__name__}"


OPTIONS = [
    Option("amortizer", None, "a trained Amortizer (train_amortized) for this model",
           lambda v: None if v is None else _amortizer_check(v)),
    Option("num_draws", 4000, "draws per image", check.positive_int),
    Option("importance", True, "correct the encoder by PSIS importance resampling", check.boolean),
    Option("num_proposals", 16000, "encoder draws per image weighted by importance sampling",
           check.positive_int),
    Option("batch", 256, "images per encoder forward pass", check.positive_int),
]


def _check(model, opts) -> list[str]:
    amort = opts["amortizer"]
    if amort is None:
        return ["needs amortizer=, a trained Amortizer (starmodels.train_amortized)"]
    problems = []
    theirs, ours = [s for s, _, _ in amort.latents], [s for s, _, _ in _latents(model)]
    if theirs != ours:
        problems.append(f"the amortizer was trained for latent sites {theirs}; this model has {ours}")
    if tuple(amort.encoder.centre.shape) != _image_shape(model):
        problems.append(f"the amortizer was trained on {tuple(amort.encoder.centre.shape)} images; this "
                        f"model's images are {_image_shape(model)}")
    return problems


@register("amortized", OPTIONS, check=_check)
def run_amortized(model, data, opts) -> RunResult:
    """The posterior of every image from a trained encoder (importance-corrected by default)."""
    amort = opts["amortizer"]
    post = amort.posterior_for(data, num_draws=opts["num_draws"], seed=opts["seed"], batch=opts["batch"],
                               importance=opts["importance"], num_proposals=opts["num_proposals"])
    return RunResult(draws=post.draws(), meta=post.meta)
