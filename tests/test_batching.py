"""Batched renders equal unbatched ones for every batch size (the XLA batch-of-one bug).

XLA:CPU (jaxlib 0.10.2) hands broadcast-multiply-reduce fusions to YNNPACK, which
got batches with a size-1 axis wrong (dLux's wavefront tilt is such a fusion);
``starmodels.startup`` switches that fusion type off before JAX starts.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer.util import potential_energy

from starmodels.infer.batched import batched_map


def test_the_minimal_xla_reproduction_is_right():
    """sum(a[..., None, None] * c, axis=-3) with a of shape (1, 2, 2): wrong by ~100% under YNN."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 2, 2)).astype(np.float32)
    c = rng.normal(size=(2, 64, 64)).astype(np.float32)
    want = np.sum(a[..., None, None] * c, axis=-3)
    got = jax.jit(lambda a, c: jnp.sum(a[..., None, None] * c, axis=-3))(a, c)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def renders(binary):
    model = binary.model
    truth = {k: jnp.asarray(v) for k, v in binary.truth.items()}
    one = np.asarray(jax.jit(lambda p: model.render(p))(truth))
    return model, truth, one


def _stack(params, n):
    return {k: jnp.stack([v] * n) for k, v in params.items()}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_jit_vmap_render_matches_single_render(renders, n):
    model, truth, one = renders
    out = np.asarray(jax.jit(jax.vmap(lambda p: model.render(p)))(_stack(truth, n)))
    for image in out:
        np.testing.assert_allclose(image, one, rtol=1e-4, atol=1e-3 * one.max())


@pytest.mark.parametrize("n,batch", [(3, 2), (5, 2), (1, 4), (7, 3)])
def test_lax_map_remainders_match(renders, n, batch):
    model, truth, one = renders
    out = np.asarray(jax.jit(lambda p: batched_map(model.render, p, batch))(_stack(truth, n)))
    assert out.shape == (n, *one.shape)
    for image in out:
        np.testing.assert_allclose(image, one, rtol=1e-4, atol=1e-3 * one.max())


def test_potential_of_a_batch_of_one_equals_unbatched(binary):
    model = binary.model
    data, truth = binary.simulate(seed=0)
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.PRNGKey(0), model, model_kwargs={"data": data})
    z = info.param_info.z
    u = lambda zz: potential_energy(model, (), {"data": data}, zz)  # noqa: E731
    single = float(jax.jit(u)(z))
    for n in (1, 2):
        zs = jax.tree_util.tree_map(lambda a, n=n: jnp.stack([a] * n), z)
        batched = np.asarray(jax.jit(jax.vmap(u))(zs))
        np.testing.assert_allclose(batched, single, rtol=1e-5)
