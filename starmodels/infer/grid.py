"""Exact posteriors on a grid, for models with one or two free parameters per independent block.

A block is the whole model, or one image of an :class:`~starmodels.plate.ImagePlate`
whose sampled sites are all local. The log joint (numpyro's potential, in the
unconstrained latent space, Jacobian included) is evaluated on a regular grid,
normalised by logsumexp, and the grid is re-centred on the posterior and
refined; the result is the reference the approximate methods are scored against.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.util import potential_energy

from starmodels.infer.batched import batched_map
from starmodels.infer.timing import stopwatch
from starmodels.plate import ImagePlate
from starmodels.priors import latent_site, physical_values

log = logging.getLogger("starmodels")

DEFAULT_POINTS = {1: 512, 2: 128}  # grid points per dimension
SPAN = 8.0  # refined grids cover the posterior mean +- SPAN sd, per dimension
EDGE_MASS_MAX = 1e-6  # posterior mass allowed on the outermost grid cells


class GridError(ValueError):
    """The model or its posterior cannot be put on a grid (too many parameters, mass at the edge)."""


def _blocks(model, data):
    """(block model, per-block data with a leading block axis, latent sites with supports)."""
    priors = model.priors()
    if isinstance(model, ImagePlate):
        if model.shared():
            raise GridError(f"grid needs independent images, but {model.shared()} are shared by all "
                            "images of the plate; use NUTS or SVI")
        block, blocks = model.resize(1), jnp.asarray(data)[:, None]
    else:
        block, blocks = model, jnp.asarray(data)[None]
    latents = dict(latent_site(k, p) for k, p in priors.items())
    return block, blocks, latents


def _prior_box(block, latents, key, n=4000):
    """Bounds (d,) of the unconstrained latent vector from prior draws, widened by 20%."""
    def draw(k):
        tr = handlers.trace(handlers.seed(block.sample_params, k)).get_trace()
        return {s: biject_to(c).inv(tr[s]["value"]) for s, c in latents.items()}

    z = jax.vmap(draw)(jax.random.split(key, n))
    flat = jax.vmap(lambda zz: ravel_pytree(zz)[0])(z)
    lo, hi = jnp.min(flat, 0), jnp.max(flat, 0)
    pad = 0.2 * (hi - lo) + 1e-6
    return z, lo - pad, hi + pad


def _axes(lo, hi, points):
    """Per-block regular axes (blocks, d, points) and their steps (blocks, d)."""
    t = jnp.linspace(0.0, 1.0, points)
    return lo[..., None] + (hi - lo)[..., None] * t, (hi - lo) / (points - 1)


def _mesh(axes):
    """Grid points (points**d, d) from axes (d, points)."""
    return jnp.stack([g.ravel() for g in jnp.meshgrid(*axes, indexing="ij")], -1)


def run_grid(model, data, *, points: int | None = None, refine: int = 2, draws: int = 4000,
             seed: int = 0):
    """Posterior of each block on a grid; return ``(draws, meta)``.

    ``points`` per dimension (default 512 in 1-D, 128 per axis in 2-D). The
    first grid spans the prior; each of ``refine`` passes re-centres it on
    the posterior mean +- 8 sd. Draws pick grid cells by weight and spread
    uniformly within the cell. ``meta["grid"]`` holds the exact posterior
    mean and sd of every site (quadrature, not Monte Carlo).
    """
    block, blocks, latents = _blocks(model, data)
    key = jax.random.PRNGKey(seed)
    k_box, k_draw = jax.random.split(key)
    with stopwatch() as t_run:
        z_prior, lo, hi = _prior_box(block, latents, k_box)
        proto = jax.tree_util.tree_map(lambda a: a[0], z_prior)
        flat0, unravel = ravel_pytree(proto)
        d = flat0.size
        if d > 2:
            raise GridError(f"grid handles 1 or 2 free parameters per block; {model.name!r} has {d} "
                            f"({list(latents)}); use NUTS or SVI")
        points = points or DEFAULT_POINTS[d]
        nb = blocks.shape[0]

        @jax.jit
        def log_post(grid_pts, block_data):  # (m, d), one block's data -> (m,)
            return -batched_map(lambda x: potential_energy(block, (), {"data": block_data}, unravel(x)),
                                grid_pts)

        def evaluate(lo, hi):
            axes, step = _axes(lo, hi, points)
            logp = jnp.stack([log_post(_mesh(axes[b]), blocks[b]) for b in range(nb)])
            return axes, step, logp

        lo, hi = jnp.broadcast_to(lo, (nb, d)), jnp.broadcast_to(hi, (nb, d))
        for _ in range(refine + 1):
            axes, step, logp = evaluate(lo, hi)
            if not bool(jnp.all(jnp.isfinite(jnp.max(logp, 1)))):
                raise GridError("the log joint is not finite anywhere on the grid of some block")
            w = jax.nn.softmax(jnp.where(jnp.isfinite(logp), logp, -jnp.inf), axis=1)
            pts = jax.vmap(_mesh)(axes)  # (nb, m, d)
            mean = jnp.einsum("bm,bmd->bd", w, pts)
            sd = jnp.sqrt(jnp.einsum("bm,bmd->bd", w, (pts - mean[:, None]) ** 2))
            sd = jnp.maximum(sd, step)  # a posterior narrower than a cell: zoom in on it
            lo, hi = mean - SPAN * sd, mean + SPAN * sd
        edge = _edge_mass(w.reshape((nb,) + (points,) * d))
        if float(edge.max()) > EDGE_MASS_MAX:
            raise GridError(f"posterior mass {float(edge.max()):.2g} on the grid edge (block "
                            f"{int(edge.argmax())}): the prior range does not contain the posterior")

        physical = jax.vmap(jax.vmap(lambda x: physical_values(block, unravel(x))))(pts)
        exact = {k: _moments(w, v) for k, v in physical.items()}
        cells = jax.vmap(lambda k, ww: jax.random.choice(k, ww.size, (draws,), p=ww))(
            jax.random.split(k_draw, nb), w)
        jitter = jax.random.uniform(jax.random.fold_in(k_draw, 1), (nb, draws, d), minval=-0.5,
                                    maxval=0.5) * step[:, None]
        zs = jnp.take_along_axis(pts, cells[..., None], axis=1) + jitter
        sample = jax.vmap(jax.vmap(lambda x: physical_values(block, unravel(x))))(zs)
    out = {k: _stack_blocks(np.asarray(v), model) for k, v in sample.items()}
    meta = {
        "method": "grid", "seed": seed, "points_per_dim": points, "dims_per_block": d,
        "blocks": nb, "refine": refine, "draws": draws, "edge_mass": float(edge.max()),
        "points_per_sd": (points - 1) / (2 * SPAN),
        "grid": {"mean": {k: _per_site(m[0], model).tolist() for k, m in exact.items()},
                 "sd": {k: _per_site(m[1], model).tolist() for k, m in exact.items()}},
        "compile_seconds": t_run.compile, "sampling_seconds": t_run.run, "init_seconds": 0.0,
        "gradient_evals": 0, "log_joint_evals": int(nb * points**d * (refine + 1)),
    }
    return out, meta


def _moments(w, v):
    """Exact mean and sd per block of values ``v`` (blocks, m, *event) under weights (blocks, m)."""
    wv = w.reshape(w.shape + (1,) * (v.ndim - 2))
    mean = (wv * v).sum(1)
    return np.asarray(mean), np.asarray(jnp.sqrt((wv * (v - mean[:, None]) ** 2).sum(1)))


def _per_site(values, model):
    """(blocks, 1?, ...) block results -> the site's own shape (plate: leading image axis)."""
    return values[:, 0] if isinstance(model, ImagePlate) else values[0]


def _stack_blocks(v, model):
    """Draws (blocks, draws, *site) -> (chain=1, draws, *site shape)."""
    if isinstance(model, ImagePlate):  # (images, draws, 1, ...) -> (1, draws, images, ...)
        return np.moveaxis(v[:, :, 0], 0, 1)[None]
    return v[0][None]


def _edge_mass(w):
    """Posterior mass on the outermost cells of each block's grid: (blocks,)."""
    inner = w[(slice(None),) + (slice(1, -1),) * (w.ndim - 1)]
    return w.reshape(w.shape[0], -1).sum(1) - inner.reshape(w.shape[0], -1).sum(1)
