"""Mode search (MAP) in the unconstrained latent space, and the Laplace approximation there.

Many starts drawn from the prior run at once, split across the host devices
(``pmap`` of a ``vmap``): Adam first (robust far from the mode), then an
L-BFGS polish (fast and precise near it). Where the model declares known
near-symmetries of its likelihood (``alternate_modes``, e.g. the sign of the
point-symmetric Zernike terms), every start's end point is mapped through
them and polished too, so a mirror mode is found and compared by design, not
by luck. The result records the chosen mode, the distinct optima the starts
reached and how far (in log joint density) each mirror mode lies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer.util import potential_energy

from starmodels.infer.compiled import Bound, cached
from starmodels.infer.latents import physical_values, unconstrained_from_physical
from starmodels.infer.timing import stopwatch

log = logging.getLogger("starmodels")

SAME_OPTIMUM = 1.0  # end points within this many log-density units of each other count as one optimum
DEGENERATE = 5.0  # a mirror mode closer than this (log density) to the best is reported as a warning


@dataclass
class ModeSearch:
    """The outcome of :func:`find_mode`.

    ``z``: unconstrained latents at the chosen mode (numpy, by latent site);
    ``log_joint``: log prior + log likelihood there (Jacobian included);
    ``spread``: best, median and worst log joint of the starts after Adam;
    ``optima``: the distinct optima among the polished points, best first,
    each ``{"log_joint", "starts"}``; ``starts_at_best``: polished points that
    reached the best; ``alternates``: per declared symmetry, ``{"name",
    "log_joint", "delta"}`` with ``delta`` = its log joint minus the chosen
    one's (<= 0), found by polishing the chosen mode's mirror image;
    ``variant``: whether the best came from a start or a mirror image.
    """

    z: dict
    log_joint: float
    starts: int
    starts_at_best: int
    optima: list = field(default_factory=list)
    alternates: list = field(default_factory=list)
    spread: list = field(default_factory=list)
    variant: str = "start"
    gradient_evals: int = 0
    compile_seconds: float = 0.0
    run_seconds: float = 0.0

    def record(self) -> dict:
        """JSON-ready summary for a result's metadata."""
        return {"log_joint": self.log_joint, "starts": self.starts, "starts_spread": self.spread,
                "polished_at_best": self.starts_at_best, "optima": self.optima,
                "alternates": self.alternates, "chosen_from": self.variant,
                "gradient_evals": self.gradient_evals, "compile_seconds": self.compile_seconds,
                "run_seconds": self.run_seconds}


def _prior_start(model, key) -> dict:
    """Unconstrained latents of one draw from the prior."""
    tr = handlers.trace(handlers.seed(model.sample_params, key)).get_trace()
    return {s.latent: biject_to(s.support).inv(tr[s.latent]["value"]) for s in model.sites().values()}


def _lbfgs(fun, z, steps: int):
    """``steps`` L-BFGS iterations (zoom line search) from ``z``; returns (z, value, gradient evals)."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry, _):
        z, state, evals = carry
        value, grad = value_and_grad(z, state=state)
        updates, state = opt.update(grad, state, z, value=value, grad=grad, value_fn=fun)
        z = optax.apply_updates(z, updates)
        n = optax.tree_utils.tree_get(state, "num_linesearch_steps")
        return (z, state, evals + n), None

    (z, _, evals), _ = jax.lax.scan(step, (z, opt.init(z), jnp.zeros((), jnp.int32)), None, length=steps)
    return z, fun(z), evals


class _Searcher:
    """Compiled search programs for one model structure and one set of settings.

    Two programs: ``explore`` (prior start + Adam, many starts across the
    devices) and ``polish`` (L-BFGS on a few candidates and their mirror
    images). Kept apart, each compiles in a few seconds; fused, the
    while-loops of the line search inflate the compile several times over.
    """

    def __init__(self, bound: Bound, adam_steps: int, lbfgs_steps: int, lr: float):
        self.bound = bound

        # jitted: every call site inside the search programs reuses one traced potential
        potential = jax.jit(lambda z, arrays, data: potential_energy(bound.program, (arrays,),
                                                                     {"data": data}, z))

        def explore(key, arrays, data):
            z = _prior_start(bound.model(arrays), key)
            fun = lambda zz: potential(zz, arrays, data)  # noqa: E731
            opt = optax.adam(optax.cosine_decay_schedule(lr, adam_steps, alpha=0.01))

            def step(carry, _):
                zz, state = carry
                updates, state = opt.update(jax.grad(fun)(zz), state, zz)
                return (optax.apply_updates(zz, updates), state), None

            (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=adam_steps)
            u = fun(z)
            return z, jnp.where(jnp.isfinite(u), u, jnp.inf)

        def polish(z, arrays, data):
            z, u, evals = _lbfgs(lambda zz: potential(zz, arrays, data), z, lbfgs_steps)
            return z, jnp.where(jnp.isfinite(u), u, jnp.inf), evals

        def mirrors(z, arrays):
            model = bound.model(arrays)
            modes = model.alternate_modes(physical_values(model, z))
            return [unconstrained_from_physical(model, p) for p in modes.values()]

        self.explore = jax.pmap(jax.vmap(explore, in_axes=(0, None, None)), in_axes=(0, None, None))
        self.polish = jax.pmap(jax.vmap(polish, in_axes=(0, None, None)), in_axes=(0, None, None))
        self.mirrors = jax.jit(jax.vmap(lambda z, arrays: jax.tree_util.tree_map(
            lambda *v: jnp.stack(v), *mirrors(z, arrays)), in_axes=(0, None)))


def find_mode(model, data, key, *, starts: int = 16, adam_steps: int = 100, lbfgs_steps: int = 40,
              lr: float = 0.05, polish: int = 4) -> ModeSearch:
    """Maximise the log joint density of ``model`` given ``data`` from ``starts`` prior draws.

    Starts are split evenly across the host devices (rounded up to a
    multiple of the device count); each runs ``adam_steps`` of Adam (cosine
    decay from ``lr``). The ``polish`` best distinct end points, and their
    images under the model's declared symmetries, then get ``lbfgs_steps``
    of L-BFGS; the best polished point is the mode.
    """
    bound = Bound(model)
    data = jnp.asarray(data)
    n_dev = jax.local_device_count()
    per = -(-starts // n_dev)
    names = _mode_names(model)
    searcher, _ = cached("map", (bound.key, adam_steps, lbfgs_steps, lr),
                         lambda: _Searcher(bound, adam_steps, lbfgs_steps, lr))
    keys = jax.random.split(key, n_dev * per).reshape(n_dev, per, -1)
    with stopwatch() as t:
        zs, us = searcher.explore(keys, bound.arrays, data)
        us = np.asarray(us, float).reshape(-1)
        zs = {k: np.asarray(v).reshape((-1,) + v.shape[2:]) for k, v in zs.items()}
        total = us.size
        if not np.any(np.isfinite(us)):
            raise RuntimeError("mode search failed: the log joint density is not finite at any start; "
                               "check that the priors cover the data")
        # the best few end points, each with its mirror images (a fixed batch: one compiled program)
        picks = list(np.argsort(np.where(np.isfinite(us), us, np.inf))[:polish])
        picks += [picks[-1]] * (polish - len(picks))
        cand = {k: jnp.asarray(v[picks]) for k, v in zs.items()}
        if len(names) > 1:
            mir = searcher.mirrors(cand, bound.arrays)  # (polish, n_alt, ...)
            cand = {k: jnp.concatenate([v[:, None], mir[k]], 1).reshape((-1,) + v.shape[1:])
                    for k, v in cand.items()}
        m = polish * len(names)
        width = -(-m // n_dev)  # candidates per device
        cand = {k: jnp.concatenate([v, jnp.repeat(v[-1:], n_dev * width - m, 0)]).reshape(
            (n_dev, width) + v.shape[1:]) for k, v in cand.items()}
        pz, pu, evals = jax.block_until_ready(searcher.polish(cand, bound.arrays, data))
    pu = np.asarray(pu, float).reshape(-1)[:m].reshape(polish, len(names))
    pz = {k: np.asarray(v).reshape((-1,) + v.shape[2:])[:m].reshape((polish, len(names)) + v.shape[2:])
          for k, v in pz.items()}
    evals = np.asarray(evals).reshape(-1)[:m]
    best_pick, best_var = np.unravel_index(np.argmin(pu), pu.shape)
    best_u = pu[best_pick, best_var]
    alternates = []
    for j in range(1, len(names)):
        other = pu[best_pick, 0 if best_var == j else j]
        alternates.append({"name": names[j], "log_joint": float(-other), "delta": float(best_u - other)})
    finite = us[np.isfinite(us)]
    result = ModeSearch(
        z={k: v[best_pick, best_var] for k, v in pz.items()}, log_joint=float(-best_u), starts=total,
        starts_at_best=int(np.sum(pu <= best_u + SAME_OPTIMUM)), optima=_distinct(pu.ravel())[:10],
        alternates=alternates, variant=names[best_var],
        spread=[float(-q) for q in np.quantile(finite, [0.0, 0.5, 1.0])],
        gradient_evals=int(total * adam_steps + np.asarray(evals).sum()),
        compile_seconds=t.compile, run_seconds=t.run)
    _report(result)
    return result


def _mode_names(model) -> list[str]:
    """"start" plus the names of the model's declared symmetries (none: just "start")."""
    probe = getattr(model, "alternate_modes", None)
    if probe is None:
        return ["start"]
    dummy = {k: np.zeros(s.shape) for k, s in model.sites().items()}
    return ["start", *probe(dummy)]


def _distinct(us: np.ndarray) -> list[dict]:
    """Distinct optima among end-point potentials ``us`` (within SAME_OPTIMUM), best first."""
    optima = []
    for u in np.sort(us[np.isfinite(us)]):
        if optima and abs(-u - optima[-1]["log_joint"]) <= SAME_OPTIMUM:
            optima[-1]["starts"] += 1
        else:
            optima.append({"log_joint": float(-u), "starts": 1})
    return optima


def _report(res: ModeSearch) -> None:
    log.info("MAP: log joint %.2f from %d starts (after Adam: best %.1f, median %.1f); %d distinct "
             "optima among the polished points", res.log_joint, res.starts, res.spread[0], res.spread[1],
             len(res.optima))
    if res.variant != "start":
        log.info("MAP: the best mode was found by polishing a start's mirror image (%s)", res.variant)
    for alt in res.alternates:
        if alt["delta"] > -DEGENERATE:
            log.warning("mode %s: its mirror image is a mode only %.2f below the best in log density; "
                        "the posterior may be bimodal and chains started at the best mode will not "
                        "visit it", alt["name"], -alt["delta"])
    if res.starts_at_best == 1 and len(res.optima) > 1:
        log.warning("only 1 polished MAP candidate reached the best optimum: the search may not have "
                    "converged or the posterior is multimodal; check r_hat and the residuals")


def flatten(z: dict) -> tuple[np.ndarray, list]:
    """A latent dict as one flat vector in numpyro's order (sorted site names), with the layout."""
    names = sorted(z)
    layout = [(k, np.shape(z[k])) for k in names]
    return np.concatenate([np.ravel(np.asarray(z[k], float)) for k in names]), layout


def unflatten(flat: np.ndarray, layout: list) -> dict:
    """Inverse of :func:`flatten` (works on a leading batch axis too)."""
    out, i = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = flat[..., i:i + size].reshape(flat.shape[:-1] + tuple(shape))
        i += size
    return out


class _Hessian:
    def __init__(self, bound: Bound, layout):
        def u(flat, arrays, data):
            z = {k: v for k, v in _unflatten_jax(flat, layout).items()}
            return potential_energy(bound.program, (arrays,), {"data": data}, z)

        self.hessian = jax.jit(jax.hessian(u))


def _unflatten_jax(flat, layout):
    out, i = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = flat[i:i + size].reshape(shape)
        i += size
    return out


def laplace(model, data, z: dict, floor: float = 1e-8):
    """Laplace approximation at ``z``: ``(mean, cov, layout)`` of the flat latent vector (numpy).

    Non-positive curvature (a saddle or an unconverged mode) is floored at
    ``floor`` so ``cov`` is always a valid covariance. ``None`` if the
    Hessian is not finite.
    """
    bound = Bound(model)
    flat, layout = flatten(z)
    key = (bound.key, tuple((k, tuple(s)) for k, s in layout))
    prog, _ = cached("hessian", key, lambda: _Hessian(bound, layout))
    hess = np.asarray(prog.hessian(jnp.asarray(flat), bound.arrays, jnp.asarray(data)), float)
    if not np.all(np.isfinite(hess)):
        return None
    evals, evecs = np.linalg.eigh(0.5 * (hess + hess.T))
    cov = (evecs / np.maximum(evals, floor)) @ evecs.T
    return flat, cov, layout
