"""Wall-clock timing that separates JAX compilation from execution."""

from __future__ import annotations

import time
from contextlib import contextmanager

import jax.monitoring

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class Stopwatch:
    """``wall`` seconds in the block, of which ``compile`` went to tracing and compiling."""

    def __init__(self):
        self.wall = 0.0
        self.compile = 0.0

    @property
    def run(self) -> float:
        """Seconds in the block not spent tracing or compiling."""
        return max(self.wall - self.compile, 0.0)


@contextmanager
def stopwatch():
    """Time a block; block on its results inside it (JAX dispatches asynchronously)."""
    sw = Stopwatch()

    def listener(event, duration, **_):
        if event in _COMPILE_EVENTS:
            sw.compile += duration

    jax.monitoring.register_event_duration_secs_listener(listener)
    t0 = time.perf_counter()
    try:
        yield sw
    finally:
        sw.wall = time.perf_counter() - t0
        jax.monitoring.unregister_event_duration_listener(listener)
