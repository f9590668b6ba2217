"""Training the tile encoder by neural posterior estimation (forward KL) on fresh simulations.

Each step simulates a new batch from the prior (:func:`starmodels.tiles.simulate.simulate_batch`),
and minimises ``-log q(true tile catalog | image)`` averaged over tiles and images, which is the
expected forward KL from the exact posterior to the encoder's distribution, up to a constant.
Simulation, loss, gradient and the optax update are one compiled step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from starmodels.tiles.encoder import TileEncoder, checkerboard_log_q
from starmodels.tiles.prior import TilePrior
from starmodels.tiles.simulate import SimulatorConfig, simulate_batch


@dataclass
class TrainLog:
    """Loss history (nats per tile) and timings (seconds)."""

    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    compile_seconds: float = 0.0
    run_seconds: float = 0.0
    images: int = 0


def loss_fn(encoder: TileEncoder, sims: dict) -> jnp.ndarray:
    """Mean negative log q of the true tile catalogs, nats per tile (two-colour scheme if the encoder
    has a conditional head)."""
    lq = jax.vmap(checkerboard_log_q, in_axes=(None, 0, 0, 0, 0, 0))(
        encoder, sims["image"], sims["background_estimate"], sims["n_sources"], sims["locs"], sims["fluxes"])
    return -lq.mean()


def train_encoder(encoder: TileEncoder, prior: TilePrior, cfg: SimulatorConfig, *, num_steps: int = 20000,
                  batch: int = 16, image_tiles: int = 32, learning_rate: float = 1e-3, seed: int = 0,
                  validate_every: int = 500, progress: bool = True, log: TrainLog | None = None):
    """Train ``encoder`` on fresh simulations; returns ``(encoder, TrainLog)``.

    Args:
        encoder: initial network; prior, cfg: what to simulate.
        num_steps: optimizer steps; batch: images per step; image_tiles: tiles per side of a
            training image (image side ``image_tiles * tile_size`` pixels).
        learning_rate: peak of a warm-up + cosine schedule (Adam with weight decay 1e-4).
        seed: seeds the simulations (the network's initial weights come with ``encoder``).
        validate_every: steps between losses on a fixed validation set of 4 batches.
    """
    if num_steps < 1 or batch < 1 or image_tiles < 1 or not (learning_rate > 0):
        raise ValueError(f"num_steps, batch, image_tiles must be >= 1 and learning_rate > 0, got "
                         f"{num_steps}, {batch}, {image_tiles}, {learning_rate}")
    log = log or TrainLog()
    n_tiles = (image_tiles, image_tiles)
    sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(500, num_steps // 10 + 1), num_steps,
                                               learning_rate * 0.02)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adamw(sched, weight_decay=1e-4))
    params, static = eqx.partition(encoder, eqx.is_inexact_array)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        sims = simulate_batch(key, prior, cfg, batch, n_tiles)
        loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), sims))(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    @jax.jit
    def val_loss(params, key):
        sims = simulate_batch(key, prior, cfg, batch, n_tiles)
        return loss_fn(eqx.combine(params, static), sims)

    key = jax.random.PRNGKey(seed)
    val_keys = jax.random.split(jax.random.fold_in(key, 10**9), 4)
    t0 = time.perf_counter()
    step = step.lower(params, state, key).compile()
    val_loss = val_loss.lower(params, key).compile()
    log.compile_seconds += time.perf_counter() - t0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, desc="training encoder", unit="step")
    t0 = time.perf_counter()
    running = []
    for i in range(num_steps):
        params, state, loss = step(params, state, jax.random.fold_in(key, i))
        running.append(loss)
        if (i + 1) % validate_every == 0 or i + 1 == num_steps:
            mean = float(jnp.mean(jnp.stack(running)))
            if not np.isfinite(mean):
                raise FloatingPointError(f"training loss is {mean} at step {i + 1}; lower learning_rate")
            v = float(np.mean([val_loss(params, k) for k in val_keys]))
            log.steps.append(i + 1)
            log.loss.append(mean)
            log.val_loss.append(v)
            running = []
            if bar is not None:
                bar.set_postfix(loss=f"{mean:.3f}", val=f"{v:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    log.run_seconds += time.perf_counter() - t0
    log.images += num_steps * batch
    return eqx.combine(params, static), log
