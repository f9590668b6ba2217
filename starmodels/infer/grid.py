"""Exact posteriors on a grid, for models with one or two free parameters per independent block.

A block is the whole model, or one block of a model that declares
independent blocks (:meth:`~starmodels.protocol.Model` ``blocks()``, e.g. the
images of an :class:`~starmodels.plate.ImagePlate` with no shared site). The
log joint (numpyro's potential, in the unconstrained latent space, Jacobian
included) is evaluated on a regular grid, normalised by logsumexp, and the
grid is re-centred on the posterior and refined; the result is the
reference the approximate methods are scored against. Any prior the
samplers accept works (bounded, positive or real supports alike): the grid
lives in the unconstrained space.
"""

from __future__ import annotations

import logging
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.util import potential_energy

from starmodels.infer import options as check
from starmodels.infer.batched import batched_map
from starmodels.infer.compiled import Bound, cached
from starmodels.infer.latents import physical_values
from starmodels.infer.registry import Option, RunResult, register
from starmodels.infer.timing import stopwatch
from starmodels.protocol import blocks_of

log = logging.getLogger("starmodels")

DEFAULT_POINTS = {1: 512, 2: 128}  # grid points per dimension
SPAN = 8.0  # refined grids cover the posterior mean +- SPAN sd, per dimension
EDGE_MASS_MAX = 1e-6  # posterior mass allowed on the outermost grid cells
PRIOR_DRAWS = 4000  # prior draws that set the first grid's box

OPTIONS = [
    Option("num_points", None, "grid points per dimension (default 512 in 1-D, 128 in 2-D)",
           check.optional(check.int_between(8, 4096))),
    Option("refine", 2, "passes that re-centre the grid on the posterior mean +- 8 sd",
           check.int_between(0, 10)),
    Option("num_draws", 4000, "draws per block, picked by weight and spread within the cell",
           check.positive_int),
]


class GridError(ValueError):
    """The model or its posterior cannot be put on a grid (too many parameters, mass at the edge)."""


def _block_model(model):
    """(model of one block, whether the model is blocked); GridError if blocks share sites."""
    blocks = blocks_of(model)
    if blocks is None:
        return model, False
    if blocks.shared:
        raise GridError(f"grid needs independent blocks, but {list(blocks.shared)} are shared by all "
                        f"{blocks.count} blocks of {model.name!r}; the grid integrates 1 or 2 "
                        "parameters per block: use NUTS or SVI")
    return blocks.resize(1), True


def _dims(block) -> int:
    return sum(math.prod(s.shape) for s in block.sites().values())


def _check(model, opts) -> list[str]:
    """The grid's structural limits, before any work (raised as GridError, not OptionError)."""
    block, _ = _block_model(model)
    d = _dims(block)
    if d > 2 or d < 1:
        raise GridError(f"grid handles 1 or 2 free parameters per block; {model.name!r} has {d} "
                        f"({[s.latent for s in block.sites().values()]}); use NUTS or SVI")
    return []


def _mesh(axes):
    """Grid points (points**d, d) from axes (d, points)."""
    return jnp.stack([g.ravel() for g in jnp.meshgrid(*axes, indexing="ij")], -1)


class _Grid:
    """Compiled grid programs for one block structure, block count and grid size."""

    def __init__(self, bound: Bound, points: int, d: int, unravel, latents):
        self.bound = bound

        def prior_box(key, arrays):
            model = bound.model(arrays)

            def draw(k):
                tr = handlers.trace(handlers.seed(model.sample_params, k)).get_trace()
                return ravel_pytree({s: biject_to(c).inv(tr[s]["value"]) for s, c in latents.items()})[0]

            flat = jax.vmap(draw)(jax.random.split(key, PRIOR_DRAWS))
            lo, hi = jnp.min(flat, 0), jnp.max(flat, 0)
            pad = 0.2 * (hi - lo) + 1e-6
            return lo - pad, hi + pad

        def evaluate(lo, hi, blocks, arrays):
            """Log joint on each block's grid: (points, steps, logp) for boxes lo, hi (blocks, d)."""
            t = jnp.linspace(0.0, 1.0, points)
            axes = lo[..., None] + (hi - lo)[..., None] * t  # (blocks, d, points)
            step = (hi - lo) / (points - 1)
            pts = jax.vmap(_mesh)(axes)  # (blocks, m, d)

            def one(args):
                p, block_data = args
                u = lambda x: potential_energy(bound.program, (arrays,), {"data": block_data},  # noqa: E731
                                               unravel(x))
                return -batched_map(u, p)

            logp = jax.lax.map(one, (pts, blocks))
            return pts, step, logp

        def physical(x, arrays):
            model = bound.model(arrays)
            return batched_map(lambda v: physical_values(model, unravel(v)), x)

        self.prior_box = jax.jit(prior_box)
        self.evaluate = jax.jit(evaluate)
        self.physical = jax.jit(lambda xs, arrays: jax.lax.map(lambda x: physical(x, arrays), xs))


@register("grid", OPTIONS, check=_check)
def run_grid(model, data, opts) -> RunResult:
    """Exact posterior of every block on a refined grid; draws and quadrature moments.

    The first grid spans the prior (``PRIOR_DRAWS`` draws, widened by 20%);
    each of ``refine`` passes re-centres it on the posterior mean +- 8 sd.
    ``meta["grid"]`` holds the exact posterior mean and sd of every site.
    """
    _check(model, opts)
    block, blocked = _block_model(model)
    blocks = jnp.asarray(data)[:, None] if blocked else jnp.asarray(data)[None]
    sites = block.sites()
    latents = {s.latent: s.support for s in sites.values()}
    d = _dims(block)
    points = opts["num_points"] or DEFAULT_POINTS[d]
    refine = opts["refine"]
    proto = {s.latent: jnp.zeros(s.shape) for s in sites.values()}
    _, unravel = ravel_pytree(proto)
    bound = Bound(block)
    nb = blocks.shape[0]
    grid, reused = cached("grid", (bound.key, points, d, tuple(latents)),
                          lambda: _Grid(bound, points, d, unravel, latents))
    key = jax.random.PRNGKey(opts["seed"])
    k_box, k_draw = jax.random.split(key)
    with stopwatch() as t_run:
        lo, hi = grid.prior_box(k_box, bound.arrays)
        lo, hi = jnp.broadcast_to(lo, (nb, d)), jnp.broadcast_to(hi, (nb, d))
        for _ in range(refine + 1):
            pts, step, logp = grid.evaluate(lo, hi, blocks, bound.arrays)
            logp = np.asarray(logp, float)
            if not np.all(np.isfinite(np.max(logp, 1))):
                raise GridError("the log joint is not finite anywhere on the grid of some block")
            w = np.exp(logp - logp.max(1, keepdims=True))
            w /= w.sum(1, keepdims=True)
            pts_np, step_np = np.asarray(pts, float), np.asarray(step, float)
            mean = np.einsum("bm,bmd->bd", w, pts_np)
            sd = np.sqrt(np.einsum("bm,bmd->bd", w, (pts_np - mean[:, None]) ** 2))
            sd = np.maximum(sd, step_np)  # a posterior narrower than a cell: zoom in on it
            lo, hi = jnp.asarray(mean - SPAN * sd), jnp.asarray(mean + SPAN * sd)
        edge = _edge_mass(w.reshape((nb,) + (points,) * d))
        if float(edge.max()) > EDGE_MASS_MAX:
            raise GridError(f"posterior mass {float(edge.max()):.2g} on the grid edge (block "
                            f"{int(edge.argmax())}): the prior range does not contain the posterior")
        physical = {k: np.asarray(v, float) for k, v in grid.physical(pts, bound.arrays).items()}
        exact = {k: _moments(w, v) for k, v in physical.items()}
        rng = np.random.default_rng([opts["seed"], 3])
        n = opts["num_draws"]
        cells = np.stack([rng.choice(w.shape[1], n, p=w[b]) for b in range(nb)])
        jitter = rng.uniform(-0.5, 0.5, (nb, n, d)) * step_np[:, None]
        zs = np.take_along_axis(pts_np, cells[..., None], axis=1) + jitter
        sample = grid.physical(jnp.asarray(zs, pts.dtype), bound.arrays)
    out = {k: _stack_blocks(np.asarray(v), blocked) for k, v in sample.items()}
    meta = {
        "method": "grid", "seed": opts["seed"], "num_points": points, "dims_per_block": d,
        "blocks": nb, "refine": refine, "num_draws": n, "edge_mass": float(edge.max()),
        "points_per_sd": (points - 1) / (2 * SPAN), "compiled_runner": "reused" if reused else "built",
        "grid": {"mean": {k: _per_site(m[0], blocked).tolist() for k, m in exact.items()},
                 "sd": {k: _per_site(m[1], blocked).tolist() for k, m in exact.items()}},
        "compile_seconds": t_run.compile, "run_seconds": t_run.run, "gradient_evals": 0,
        "log_joint_evals": int(nb * points**d * (refine + 1)),
    }
    return RunResult(draws=out, meta=meta)


def _moments(w, v):
    """Exact mean and sd per block of values ``v`` (blocks, m, *event) under weights (blocks, m)."""
    wv = w.reshape(w.shape + (1,) * (v.ndim - 2))
    mean = (wv * v).sum(1)
    return mean, np.sqrt((wv * (v - mean[:, None]) ** 2).sum(1))


def _per_site(values, blocked: bool):
    """(blocks, 1?, ...) block results -> the site's own shape (blocked: a leading block axis)."""
    return values[:, 0] if blocked else values[0]


def _stack_blocks(v, blocked: bool):
    """Draws (blocks, draws, *site) -> (chain=1, draws, *site shape)."""
    if blocked:  # (blocks, draws, 1, ...) -> (1, draws, blocks, ...)
        return np.moveaxis(v[:, :, 0], 0, 1)[None]
    return v[0][None]


def _edge_mass(w):
    """Posterior mass on the outermost cells of each block's grid: (blocks,)."""
    inner = w[(slice(None),) + (slice(1, -1),) * (w.ndim - 1)]
    return w.reshape(w.shape[0], -1).sum(1) - inner.reshape(w.shape[0], -1).sum(1)
