"""Host CPU devices and the chain method: decided here, once, and recorded.

JAX reads the host device count when its CPU backend starts, so
:func:`configure_host_devices` must run before anything touches a JAX array.
``import starmodels`` calls it first thing; set ``STARMODELS_HOST_DEVICES`` to
choose the count (default: the number of CPU cores).
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger("starmodels")

ENV_VAR = "STARMODELS_HOST_DEVICES"
_FLAG = "--xla_force_host_platform_device_count"


def _backend_started() -> bool:
    import sys

    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def configure_host_devices(count: int | None = None) -> int:
    """Ask XLA for ``count`` host CPU devices; return the count requested.

    Must run before the JAX CPU backend starts. If it has already started the
    request cannot take effect: a warning says so and the live count stands.
    """
    if count is None:
        count = int(os.environ.get(ENV_VAR, os.cpu_count() or 1))
    if count < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {count}")
    if _backend_started():
        import jax

        live = jax.local_device_count()
        if live != count:
            log.warning(
                "JAX started before starmodels could set %d host devices; %d are "
                "available. Import starmodels before JAX or set XLA_FLAGS=%s=%d.",
                count, live, _FLAG, count,
            )
        return live
    flags = re.sub(rf"{_FLAG}=\d+", "", os.environ.get("XLA_FLAGS", "")).strip()
    os.environ["XLA_FLAGS"] = f"{flags} {_FLAG}={count}".strip()
    return count


def device_count() -> int:
    """Number of JAX devices available to run chains on."""
    import jax

    return jax.local_device_count()


def choose_chain_method(chains: int, requested: str | None = None) -> str:
    """Decide how ``chains`` chains run, log the decision, and return it.

    ``parallel`` (one chain per device, via ``pmap``) when there are enough
    devices; otherwise ``vectorized`` (all chains in one ``vmap`` on one device).
    ``sequential`` only when asked for. Asking for ``parallel`` without enough
    devices is an error, never a silent fallback.
    """
    n_dev = device_count()
    if requested not in (None, "parallel", "vectorized", "sequential"):
        raise ValueError(
            f"chain_method must be 'parallel', 'vectorized' or 'sequential', got {requested!r}"
        )
    if chains == 1:
        method = requested or "sequential"
    elif requested == "parallel" and n_dev < chains:
        raise RuntimeError(
            f"chain_method='parallel' needs {chains} devices but JAX has {n_dev}; set "
            f"{ENV_VAR}={chains} before importing starmodels, or run fewer chains."
        )
    elif requested is not None:
        method = requested
    elif n_dev >= chains:
        method = "parallel"
    else:
        method = "vectorized"
        log.warning(
            "%d chains but only %d JAX devices: running chains vectorized on one "
            "device. Set %s=%d before importing starmodels to run them in parallel.",
            chains, n_dev, ENV_VAR, chains,
        )
    log.info("running %d chain(s) %s on %d device(s)", chains, method, n_dev)
    return method
