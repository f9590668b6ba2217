"""The chain method: decided here, once, logged and recorded.

The host device count itself is set before JAX starts, by
:func:`starmodels.startup.configure_host_devices` (``STARMODELS_HOST_DEVICES``).
"""

from __future__ import annotations

import logging

from starmodels.startup import DEVICES_ENV as ENV_VAR

log = logging.getLogger("starmodels")


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
