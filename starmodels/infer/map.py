"""MAP estimates in the unconstrained latent space, from several prior draws at once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from numpyro.infer.initialization import init_to_sample
from numpyro.infer.util import initialize_model


def find_map(model, data, key, starts: int = 4, steps: int = 500, lr: float = 0.05):
    """Maximise the log joint from ``starts`` prior draws with Adam; keep the best.

    Returns ``(z, potential, model_info)``: the unconstrained MAP point (dict),
    its potential energy (negative log joint) and numpyro's model info.
    Gradient evaluations: ``starts * steps``.
    """
    keys = jax.random.split(key, starts)
    info = initialize_model(keys, model, model_kwargs={"data": data}, init_strategy=init_to_sample)
    z0 = info.param_info.z
    potential = info.potential_fn
    schedule = optax.cosine_decay_schedule(lr, steps, alpha=0.01)
    opt = optax.adam(schedule)

    @jax.jit
    def optimise(z0):
        def one(z):
            state = opt.init(z)

            def step(carry, _):
                z, state = carry
                g = jax.grad(potential)(z)
                updates, state = opt.update(g, state, z)
                return (optax.apply_updates(z, updates), state), None

            (z, _), _ = jax.lax.scan(step, (z, state), None, length=steps)
            return z, potential(z)

        return jax.vmap(one)(z0)

    z, u = optimise(z0)
    u = jnp.where(jnp.isfinite(u), u, jnp.inf)
    best = int(jnp.argmin(u))
    return jax.tree_util.tree_map(lambda a: a[best], z), float(u[best]), info


def laplace_inverse_mass(potential_fn, z: dict, dense: bool = True, floor: float = 1e-8):
    """Inverse Hessian of the potential at ``z``, keyed as numpyro's structured mass matrix.

    Sites are ordered by sorted name, as numpyro ravels them. Non-positive
    curvature (a saddle or an unconverged MAP) is floored at ``floor`` so the
    result is always a valid covariance. Returns ``{tuple(names): matrix}`` (or
    its diagonal when ``dense`` is False).
    """
    from jax.flatten_util import ravel_pytree

    names = tuple(sorted(z))
    flat, unravel = ravel_pytree(tuple(z[k] for k in names))
    u = lambda x: potential_fn(dict(zip(names, unravel(x), strict=True)))
    hess = jax.hessian(u)(flat)
    hess = 0.5 * (hess + hess.T)
    evals, evecs = jnp.linalg.eigh(hess)
    if not bool(jnp.all(jnp.isfinite(evals))):
        return None
    cov = (evecs / jnp.maximum(evals, floor)) @ evecs.T
    return {names: cov if dense else jnp.diag(cov)}
