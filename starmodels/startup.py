"""What JAX must be told before it starts: host devices, XLA workarounds, the compilation cache.

``import starmodels`` calls :func:`configure_jax` first thing. XLA reads its
flags once, when the CPU backend starts, so the device count and the
workaround below only take effect if starmodels is imported before anything
touches a JAX array; otherwise a warning says what could not be applied.

Environment variables:

- ``STARMODELS_HOST_DEVICES``: host CPU devices (default: the number of cores).
- ``STARMODELS_COMPILE_CACHE``: folder of JAX's persistent compilation cache
  (default ``$XDG_CACHE_HOME/starmodels/jax`` or ``~/.cache/starmodels/jax``);
  ``0``/``off``/``false``/``no`` turns the cache off.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

log = logging.getLogger("starmodels")

DEVICES_ENV = "STARMODELS_HOST_DEVICES"
CACHE_ENV = "STARMODELS_COMPILE_CACHE"
_DEVICE_FLAG = "--xla_force_host_platform_device_count"
# XLA:CPU in jaxlib 0.10.2 hands broadcast-multiply-reduce fusions to YNNPACK, which
# miscomputes some of them when a batch axis has size 1 (e.g. jit(vmap(f)) over ONE
# dLux PSF, or the remainder of lax.map(..., batch_size=n)). Removing the "reduce"
# YNN fusion type (dot and eltwise stay) gives the plain XLA loop fusion, which is
# correct. See tests/test_batching.py and the note in starmodels/README (batch-of-one).
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_WORKAROUND = f"{_YNN_FLAG}=-reduce"
_OFF = {"0", "off", "false", "no", "none", ""}


def backend_started() -> bool:
    """True once JAX has started a backend (XLA flags can no longer change)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", {}))


def _set_flag(flags: str, name: str, value: str) -> str:
    flags = re.sub(rf"{re.escape(name)}=\S*", "", flags).strip()
    return f"{flags} {name}={value}".strip()


def configure_host_devices(count: int | None = None) -> int:
    """Ask XLA for ``count`` host CPU devices and apply the XLA workarounds; return the count.

    ``count`` defaults to ``$STARMODELS_HOST_DEVICES`` or the number of CPU
    cores. Must run before the JAX CPU backend starts; if it has already
    started, a warning says so and the live device count is returned.
    """
    if count is None:
        raw = os.environ.get(DEVICES_ENV, str(os.cpu_count() or 1))
        try:
            count = int(raw)
        except ValueError:
            raise ValueError(f"{DEVICES_ENV} must be a positive integer, got {raw!r}") from None
    if count < 1:
        raise ValueError(f"{DEVICES_ENV} must be a positive integer, got {count}")
    if backend_started():
        import jax

        live = jax.local_device_count()
        flags = os.environ.get("XLA_FLAGS", "")
        if live != count or _YNN_FLAG not in flags:
            log.warning(
                "JAX started before starmodels: %d host devices (asked for %d) and XLA's YNN reduce "
                "fusion may still be on (it miscomputes batches of one). Import starmodels before "
                "JAX, or set XLA_FLAGS='%s=%d %s'.", live, count, _DEVICE_FLAG, count, _YNN_WORKAROUND,
            )
        return live
    flags = _set_flag(os.environ.get("XLA_FLAGS", ""), _DEVICE_FLAG, str(count))
    if _YNN_FLAG not in flags:  # a user's own choice of YNN fusions stands
        flags = f"{flags} {_YNN_WORKAROUND}"
    os.environ["XLA_FLAGS"] = flags
    return count


def default_cache_dir() -> Path:
    """Where compiled programs are kept between processes (per user)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "starmodels" / "jax"


def cache_dir_from_env() -> Path | None:
    """The compilation cache folder ``STARMODELS_COMPILE_CACHE`` asks for, or None when it is off."""
    raw = os.environ.get(CACHE_ENV)
    if raw is None:
        return default_cache_dir()
    if raw.strip().lower() in _OFF:
        return None
    return Path(raw).expanduser()


_cache_state: dict = {"dir": None}


def configure_compile_cache(folder: str | Path | None | bool = True) -> Path | None:
    """Turn JAX's persistent compilation cache on in ``folder`` (``True``: the default) or off (None/False).

    Every program that took more than 0.5 s to compile is stored, so a second
    process fitting the same model on data of the same shape skips
    compilation. Returns the folder in use (None when off).
    """
    import jax

    if folder is True:
        folder = cache_dir_from_env()
    if folder is None or folder is False:
        jax.config.update("jax_enable_compilation_cache", False)
        _cache_state["dir"] = None
        return None
    from starmodels.atomic import ResultError, check_writable_folder

    try:
        path = check_writable_folder(folder)
    except ResultError as err:
        log.warning("compilation cache off: %s", err)
        jax.config.update("jax_enable_compilation_cache", False)
        _cache_state["dir"] = None
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _cache_state["dir"] = path
    return path


def compile_cache_dir() -> Path | None:
    """The compilation cache folder in use, or None when the cache is off."""
    return _cache_state["dir"]


def fix_numpyro_pytree_order() -> None:
    """Make numpyro distributions flatten their fields in a fixed (sorted) order.

    numpyro 0.22 gathers a distribution's pytree fields through a Python
    ``set``, so their order follows ``PYTHONHASHSEED``: the arguments of every
    compiled program that takes a model's priors (``Normal(loc, scale)``, ...)
    are permuted from one process to the next, the programs differ, and JAX's
    persistent compilation cache misses. Every numpyro use of these field
    lists looks fields up by name, so sorting them changes nothing else.
    """
    from numpyro.distributions.distribution import Distribution

    if getattr(Distribution, "_starmodels_sorted_fields", False):
        return
    data = Distribution.gather_pytree_data_fields.__func__
    aux = Distribution.gather_pytree_aux_fields.__func__
    Distribution.gather_pytree_data_fields = classmethod(lambda cls: tuple(sorted(data(cls))))
    Distribution.gather_pytree_aux_fields = classmethod(lambda cls: tuple(sorted(aux(cls))))
    Distribution._starmodels_sorted_fields = True
