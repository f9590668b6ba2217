"""Map a rendering function over many parameter sets without holding all their intermediates at once."""

from __future__ import annotations

import jax

RENDER_BATCH = 64  # parameter sets rendered together: a dLux binary_star render holds ~8 MB of temporaries


def batched_map(f, xs, batch_size: int = RENDER_BATCH):
    """``jax.vmap(f)(xs)`` in batches of ``batch_size`` (memory bounded by the batch, not by ``len(xs)``)."""
    return jax.lax.map(f, xs, batch_size=batch_size)
