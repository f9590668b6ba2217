"""Flux units for tile catalogs: electrons, nanomaggies and magnitudes.

* Fluxes in catalogs are **electrons** (e-) per band, summed over the source.
* A **nanomaggy** (nMgy) is the SDSS linear flux unit: ``nmgy = flux_e / nelec_per_nmgy``, where
  ``nelec_per_nmgy`` (e- per nMgy) is the calibration of one frame and band (SDSS: gain / (calibration
  factor); for the M2 field in r it is :data:`SDSS_M2_NELEC_PER_NMGY_R` = 856.098).
* **Magnitudes** are SDSS/AB-like: ``mag = 22.5 - 2.5 log10(nmgy)``, so 1 nMgy is 22.5 mag.

Every function works on numpy and jax arrays (and Python numbers); jax in, jax out. Magnitudes of
non-positive fluxes do not exist: by default they raise ``ValueError`` naming how many values are
non-positive; ``nonpositive="nan"`` returns NaN for them instead (required under ``jax.jit``, where
values cannot be checked).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

NMGY_ZERO_POINT = 22.5
"""Magnitude of a flux of 1 nanomaggy (mag)."""

SDSS_M2_NELEC_PER_NMGY_R = 856.098
"""Electrons per nanomaggy of the SDSS frame of the M2 field in the r band (e- / nMgy)."""

_NONPOSITIVE = ("raise", "nan")


def _xp(*xs):
    return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def _count_nonpositive(x) -> int | None:
    """Number of values ``<= 0`` (NaN counts too), or None when ``x`` is traced (values unknown)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return int(np.sum(~(np.asarray(x) > 0)))


def _check_conversion(nelec_per_nmgy) -> None:
    bad = _count_nonpositive(nelec_per_nmgy)
    if bad:
        raise ValueError(f"nelec_per_nmgy must be positive (electrons per nanomaggy); {bad} values are not")


def flux_to_nmgy(flux_e, nelec_per_nmgy):
    """Electrons -> nanomaggies: ``flux_e / nelec_per_nmgy``.

    Args:
        flux_e: flux, e-.
        nelec_per_nmgy: calibration, e- per nMgy (positive; a number or an array broadcasting with
            ``flux_e``).

    Returns:
        flux, nMgy.
    """
    _check_conversion(nelec_per_nmgy)
    return flux_e / nelec_per_nmgy


def nmgy_to_flux(nmgy, nelec_per_nmgy):
    """Nanomaggies -> electrons: ``nmgy * nelec_per_nmgy``.

    Args:
        nmgy: flux, nMgy.
        nelec_per_nmgy: calibration, e- per nMgy (positive).

    Returns:
        flux, e-.
    """
    _check_conversion(nelec_per_nmgy)
    return nmgy * nelec_per_nmgy


def nmgy_to_mag(nmgy, nonpositive: str = "raise"):
    """Nanomaggies -> magnitudes: ``22.5 - 2.5 log10(nmgy)``.

    Args:
        nmgy: flux, nMgy.
        nonpositive: ``"raise"`` (default): ``ValueError`` if any value is ``<= 0`` (or NaN), naming
            how many; not possible under ``jax.jit``, which then needs ``"nan"``. ``"nan"``: NaN for
            those values.

    Returns:
        magnitude, mag.
    """
    if nonpositive not in _NONPOSITIVE:
        raise ValueError(f"nonpositive must be one of {_NONPOSITIVE}, not {nonpositive!r}")
    xp = _xp(nmgy)
    if nonpositive == "raise":
        bad = _count_nonpositive(nmgy)
        if bad is None:
            raise ValueError("nmgy_to_mag cannot check traced values under jax.jit; pass nonpositive='nan'")
        if bad:
            size = np.size(nmgy)
            raise ValueError(f"magnitude of a non-positive flux: {bad} of {size} values are <= 0 or NaN; "
                             "pass nonpositive='nan' to get NaN for them")
    pos = nmgy > 0
    safe = xp.where(pos, nmgy, 1.0)
    return xp.where(pos, NMGY_ZERO_POINT - 2.5 * xp.log10(safe), xp.nan)


def mag_to_nmgy(mag):
    """Magnitudes -> nanomaggies: ``10 ** ((22.5 - mag) / 2.5)``.

    Args:
        mag: magnitude, mag.

    Returns:
        flux, nMgy (positive).
    """
    return 10.0 ** ((NMGY_ZERO_POINT - mag) / 2.5)


def flux_to_mag(flux_e, nelec_per_nmgy, nonpositive: str = "raise"):
    """Electrons -> magnitudes: ``22.5 - 2.5 log10(flux_e / nelec_per_nmgy)``.

    Args:
        flux_e: flux, e-.
        nelec_per_nmgy: calibration, e- per nMgy (positive).
        nonpositive: as in :func:`nmgy_to_mag`.

    Returns:
        magnitude, mag.
    """
    return nmgy_to_mag(flux_to_nmgy(flux_e, nelec_per_nmgy), nonpositive=nonpositive)


def mag_to_flux(mag, nelec_per_nmgy):
    """Magnitudes -> electrons: ``nelec_per_nmgy * 10 ** ((22.5 - mag) / 2.5)``.

    Args:
        mag: magnitude, mag.
        nelec_per_nmgy: calibration, e- per nMgy (positive).

    Returns:
        flux, e-.
    """
    return nmgy_to_flux(mag_to_nmgy(mag), nelec_per_nmgy)
