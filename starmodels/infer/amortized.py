"""Amortized VI: an encoder network maps each image to its variational posterior.

Train once on a set of images (maximising the ELBO with reparameterised
gradients over minibatches, through numpyro's SVI and ``eqx_module``), then
:meth:`Amortizer.posterior_for` is one forward pass per batch of new images.
Works for an :class:`~starmodels.plate.ImagePlate` whose sampled sites are all
per-image (local); the guide is a Gaussian in each image's unconstrained
latent space (mean-field across parameters of one image).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.module import eqx_module
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.util import potential_energy
from numpyro.optim import optax_to_numpyro
from tqdm.auto import tqdm

from starmodels.diagnostics import psis_khat
from starmodels.infer.batched import batched_map
from starmodels.infer.timing import stopwatch
from starmodels.plate import PLATE, ImagePlate
from starmodels.priors import latent_site, physical_values
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
        a = jnp.sqrt(jnp.clip(image, 0.0) + 0.375)
        x = (a - jax.lax.stop_gradient(self.centre)) / jax.lax.stop_gradient(self.spread)
        out = self.mlp(x.ravel())
        return out[: self.dim], out[self.dim:]


def _latents(model: ImagePlate):
    """Per local site: (latent site name, support, event shape), in program order."""
    if not isinstance(model, ImagePlate):
        raise TypeError("amortized VI needs an ImagePlate (images with per-image parameters)")
    if model.shared():
        raise ValueError(f"amortized VI needs every sampled site to be per image; {model.shared()} "
                         "are shared by all images")
    priors = model.priors()
    return [(*latent_site(k, priors[k]), tuple(priors[k].batch_shape)) for k in model.local]


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


@dataclass
class Amortizer:
    """A trained encoder for ``model``; ``posterior_for(images)`` gives posteriors without refitting."""

    model: ImagePlate
    encoder: Encoder
    meta: dict = field(default_factory=dict)

    @property
    def latents(self):
        return _latents(self.model)

    def encode(self, images, batch: int = 256):
        """Variational mean and log sd (n, dim) of every image's unconstrained latents."""
        imgs = jnp.asarray(self.model.resize(len(images)).check_data(images))
        fwd = _forward(self.encoder)
        parts = [fwd(_pad(imgs[i:i + batch], batch)) for i in range(0, len(imgs), batch)]
        loc = jnp.concatenate([p[0] for p in parts])[: len(imgs)]
        return loc, jnp.concatenate([p[1] for p in parts])[: len(imgs)]

    def posterior_for(self, images, samples: int = 1000, seed: int = 0, batch: int = 256,
                      khat: bool = True) -> Posterior:
        """Posterior of each image's parameters: draws (1 chain, ``samples``, image) in physical units.

        ``khat``: Pareto k-hat of each image's guide against its exact posterior
        (PSIS); ``meta["khat"]`` is the worst image's, ``meta["khat_per_image"]`` all.
        """
        images = np.asarray(images, float)
        with stopwatch() as t_enc:
            loc, log_scale = jax.block_until_ready(self.encode(images, batch))
        key = jax.random.PRNGKey(seed)
        eps = jax.random.normal(key, (samples,) + loc.shape)
        z = loc + jnp.exp(log_scale) * eps  # (samples, n, dim) unconstrained
        plate = self.model.resize(len(images))
        phys = jax.jit(jax.vmap(lambda zz: physical_values(plate, _split(zz, self.latents))))(z)
        draws = {k: np.asarray(v)[None] for k, v in phys.items()}
        meta = {"method": "amortized", "model": self.model.name, "seed": seed, "samples": samples,
                "images": len(images), "encode_seconds": t_enc.run, "compile_seconds": t_enc.compile,
                "images_per_second": len(images) / max(t_enc.run, 1e-9), "labels": plate.labels(),
                "encoder": self.meta}
        if khat:
            k = np.asarray(_khat_per_image(self.model, jnp.asarray(plate.check_data(images)), z,
                                           loc, log_scale, self.latents))
            meta.update(khat=float(np.max(k)), khat_per_image=k.tolist(), khat_median=float(np.median(k)))
        idata = build_idata(draws, plate.labels(), observed=images)
        return Posterior(idata=idata, meta=meta)

    def save(self, path) -> Path:
        """One file: a JSON line (format, model, latent sites, network shape) then the weights."""
        path = Path(path)
        head = {"format": _FORMAT, "model": self.model.name, "sites": [s for s, _, _ in self.latents],
                "shape": list(self.model.model.shape), "dim": self.encoder.dim,
                "width": self.encoder.mlp.width_size, "depth": self.encoder.mlp.depth,
                "meta": self.meta}
        with open(path, "wb") as f:
            f.write((json.dumps(head) + "\n").encode())
            eqx.tree_serialise_leaves(f, self.encoder)
        return path

    @classmethod
    def load(cls, path, model: ImagePlate) -> Amortizer:
        """Read an encoder saved by :meth:`save` for ``model`` (which must have the same latent sites)."""
        with open(path, "rb") as f:
            head = json.loads(f.readline().decode())
            if head.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a starmodels encoder file (format {head.get('format')})")
            sites = [s for s, _, _ in _latents(model)]
            if head["sites"] != sites or tuple(head["shape"]) != tuple(model.model.shape):
                raise ValueError(f"encoder in {path} was trained for sites {head['sites']} on "
                                 f"{head['shape']} images; this model has {sites} on "
                                 f"{list(model.model.shape)}")
            template = Encoder(tuple(head["shape"]), head["dim"], width=head["width"],
                               depth=head["depth"], key=jax.random.PRNGKey(0))
            encoder = eqx.tree_deserialise_leaves(f, template)
        return cls(model=model, encoder=encoder, meta=head["meta"])


def _pad(x, n):
    """Pad a batch to ``n`` rows (repeating the last) so one compiled forward pass serves all."""
    return x if len(x) == n else jnp.concatenate([x, jnp.repeat(x[-1:], n - len(x), 0)])


@eqx.filter_jit
def _apply(encoder, images):
    return jax.vmap(encoder)(images)


def _forward(encoder):
    return lambda images: _apply(encoder, images)


def _khat_per_image(model, images, z, loc, log_scale, latents):
    """PSIS k-hat of each image's guide: log w = log p(z, image) - log q(z | image), unconstrained."""
    one = model.resize(1)
    scale = jnp.exp(log_scale)

    @jax.jit
    def log_w(img, zi, li, si):  # zi: (samples, dim)
        log_q = dist.Normal(li, si).log_prob(zi).sum(-1)
        u = lambda x: potential_energy(one, (), {"data": img[None]},  # noqa: E731
                                       {k: v[None] for k, v in _split(x, latents).items()})
        return -batched_map(u, zi, 256) - log_q

    lw = [log_w(images[i], z[:, i], loc[i], scale[i]) for i in range(images.shape[0])]
    return [psis_khat(np.asarray(w)) for w in lw]


def train_amortized(model: ImagePlate, images, *, steps: int = 5000, batch: int = 64, lr: float = 1e-3,
                    width: int = 128, depth: int = 2, num_particles: int = 1, chunk: int = 250,
                    seed: int = 0, progress: bool = True) -> Amortizer:
    """Train an encoder on ``images`` (N, ny, nx) by maximising the ELBO of random minibatches.

    Adam with cosine decay over ``steps``; ``batch`` images per step. The
    ELBO per image is recorded every ``chunk`` steps in ``meta["elbo_trace"]``.
    Train on many simulated images (e.g. from the prior) and apply to new
    ones; the encoder can only be as good as the training set is typical.
    """
    if min(steps, batch, chunk, num_particles) < 1:
        raise ValueError("steps, batch, chunk and num_particles must be >= 1")
    latents = _latents(model)
    n = len(images)
    data = jnp.asarray(model.resize(n).check_data(images))
    batch = min(batch, n)
    key = jax.random.PRNGKey(seed)
    k_net, k_svi, k_batch = jax.random.split(key, 3)
    dim = sum(math.prod(s) for _, _, s in latents)
    encoder = Encoder(data.shape[1:], dim, width=width, depth=depth, key=k_net, images=data)
    plate = model.resize(batch)

    def guide(data=None):
        net = eqx_module("encoder", encoder)
        loc, log_scale = jax.vmap(net)(data)
        qs = _q(loc, log_scale, latents)
        with numpyro.plate(PLATE, data.shape[0], dim=-1):
            for site, _, _ in latents:
                numpyro.sample(site, qs[site])

    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(optax.cosine_decay_schedule(lr, steps,
                                                                                            0.05)))
    svi = SVI(plate, guide, optax_to_numpyro(opt), Trace_ELBO(num_particles=num_particles))

    @jax.jit
    def run_chunk(state, k):
        def step(st, kk):
            idx = jax.random.choice(kk, n, (batch,), replace=False)
            return svi.update(st, data=data[idx])

        return jax.lax.scan(step, state, jax.random.split(k, chunk))

    trace = []
    with stopwatch() as t_run:
        state = svi.init(k_svi, data=data[:batch])
        bar = tqdm(total=steps, desc="amortized VI", disable=not progress)
        done = 0
        while done < steps:
            state, losses = run_chunk(state, jax.random.fold_in(k_batch, done))
            trace.append(float(losses.mean()) / batch)
            done += chunk
            bar.update(chunk)
            bar.set_postfix(elbo_per_image=f"{-trace[-1]:.5g}")
        bar.close()
        jax.block_until_ready(state)
    trained = eqx.combine(svi.get_params(state)["encoder$params"],
                          eqx.partition(encoder, eqx.is_inexact_array)[1])
    meta = {"train_images": n, "steps": done, "batch": batch, "lr": lr, "seed": seed,
            "num_particles": num_particles, "width": width, "depth": depth,
            "elbo_trace": [-v for v in trace], "final_elbo_per_image": -trace[-1],
            "train_seconds": t_run.run, "compile_seconds": t_run.compile}
    log.info("amortized VI: %d steps on %d images in %.1f s, ELBO/image %.2f", done, n, t_run.run,
             -trace[-1])
    return Amortizer(model=model, encoder=trained, meta=meta)
