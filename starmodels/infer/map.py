"""MAP estimates in the unconstrained latent space, and the Laplace approximation there."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from numpyro.infer.initialization import init_to_sample
from numpyro.infer.util import initialize_model

log = logging.getLogger("starmodels")

SAME_OPTIMUM = 1.0  # starts ending within this many log-density units of the best found it too


@dataclass
class MapResult:
    z: dict  # unconstrained MAP point by site
    potential: float  # negative log joint there
    n_best: int  # starts that reached it (within SAME_OPTIMUM)
    potentials: jnp.ndarray  # final potential of every start
    potential_fn: object
    gradient_evals: int


def find_map(model, data, key, starts: int = 16, steps: int = 500, lr: float = 0.05) -> MapResult:
    """Maximise the log joint from ``starts`` prior draws at once (vectorised Adam); keep the best.

    Image posteriors often have local optima (e.g. the sign of even Zernike
    terms); many cheap vectorised starts find the global one far more
    reliably than a few. Warns when only one start reached the best point.
    """
    keys = jax.random.split(key, starts)
    info = initialize_model(keys, model, model_kwargs={"data": data}, init_strategy=init_to_sample)
    potential = info.potential_fn
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))

    @jax.jit
    def optimise(z0):
        def one(z):
            def step(carry, _):
                z, state = carry
                updates, state = opt.update(jax.grad(potential)(z), state, z)
                return (optax.apply_updates(z, updates), state), None

            (z, _), _ = jax.lax.scan(step, (z, opt.init(z)), None, length=steps)
            return z, potential(z)

        return jax.vmap(one)(z0)

    z, u = optimise(info.param_info.z)
    u = jnp.where(jnp.isfinite(u), u, jnp.inf)
    best = int(jnp.argmin(u))
    if not bool(jnp.isfinite(u[best])):
        raise RuntimeError("MAP search failed: the log joint is not finite at any start")
    n_best = int(jnp.sum(u <= u[best] + SAME_OPTIMUM))
    if n_best == 1 and starts > 1:
        log.warning("only 1 of %d MAP starts ended within %g of the best log joint: the search may "
                    "not have converged, or the posterior is multimodal and a better optimum may "
                    "exist; check r_hat and the residuals", starts, SAME_OPTIMUM)
    return MapResult(jax.tree_util.tree_map(lambda a: a[best], z), float(u[best]), n_best, u,
                     potential, starts * steps)


def laplace(potential_fn, z: dict, floor: float = 1e-8):
    """Laplace approximation at ``z``: ``(names, mean, cov, unravel)`` over the flat latent vector.

    Sites are ordered by sorted name, as numpyro ravels a structured mass
    matrix. Non-positive curvature (a saddle or an unconverged MAP) is floored
    at ``floor`` so ``cov`` is always a valid covariance. ``None`` if the
    Hessian is not finite.
    """
    names = tuple(sorted(z))
    flat, unravel = ravel_pytree(tuple(z[k] for k in names))
    u = lambda x: potential_fn(dict(zip(names, unravel(x), strict=True)))
    hess = jax.hessian(u)(flat)
    evals, evecs = jnp.linalg.eigh(0.5 * (hess + hess.T))
    if not bool(jnp.all(jnp.isfinite(evals))):
        return None
    cov = (evecs / jnp.maximum(evals, floor)) @ evecs.T
    return names, flat, cov, unravel
