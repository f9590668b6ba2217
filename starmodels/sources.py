"""Sources: what is in the sky, as positions (radians) and fluxes (photons).

Every source maps its parameters to ``(positions, fluxes)``: positions of
shape (n, 2) in radians on the optical axis frame, fluxes of shape (n,) in
photons collected by the aperture over the exposure.
"""

from __future__ import annotations

import dLux.utils as dlu
import jax.numpy as jnp

from starmodels.component import Component


class PointSource(Component):
    """One unresolved star.

    Parameters: ``x``, ``y`` (arcsec, offset from the image centre) and
    ``log_flux`` (log10 of the photons collected).
    """

    role = "source"
    param_names = ("x", "y", "log_flux")

    def positions_fluxes(self, p: dict):
        """Positions (n, 2) in radians (x, y) and fluxes (n,) in photons from the parameters."""
        pos = dlu.arcsec2rad(jnp.stack([p["x"], p["y"]]))[None, :]
        return pos, jnp.atleast_1d(10.0 ** p["log_flux"])


class PointSourceFlux(Component):
    """One unresolved star with a linear flux.

    Parameters: ``x``, ``y`` (arcsec, offset from the image centre) and
    ``flux`` (photons collected; a Normal prior on it is the usual
    photometry set-up).
    """

    role = "source"
    param_names = ("x", "y", "flux")

    def positions_fluxes(self, p: dict):
        """Positions (n, 2) in radians (x, y) and fluxes (n,) in photons from the parameters."""
        pos = dlu.arcsec2rad(jnp.stack([p["x"], p["y"]]))[None, :]
        return pos, jnp.atleast_1d(p["flux"])


class StarField(Component):
    """K unresolved stars, each with its own position and linear flux.

    Parameters, each of shape (K,): ``x``, ``y`` (arcsec from the image
    centre; x along columns, y along rows) and ``flux`` (photons or
    electrons collected).
    """

    role = "source"
    param_names = ("x", "y", "flux")

    def positions_fluxes(self, p: dict):
        """Positions (n, 2) in radians (x, y) and fluxes (n,) in photons from the parameters."""
        return dlu.arcsec2rad(jnp.stack([p["x"], p["y"]], axis=-1)), p["flux"]


class BinaryStar(Component):
    """Two unresolved stars in dLux's binary parameterisation.

    Parameters: ``x``, ``y`` (arcsec, the binary's mean position),
    ``separation`` (arcsec), ``position_angle`` (degrees, from +y towards +x),
    ``log_flux`` (log10 of the total photons of both stars) and ``contrast``
    (flux of the primary over the secondary; the primary lies at +separation/2
    along the position angle).
    """

    role = "source"
    param_names = ("x", "y", "separation", "position_angle", "log_flux", "contrast")

    def positions_fluxes(self, p: dict):
        """Positions (n, 2) in radians (x, y) and fluxes (n,) in photons from the parameters."""
        centre = dlu.arcsec2rad(jnp.stack([p["x"], p["y"]]))
        pos = dlu.positions_from_sep(
            centre, dlu.arcsec2rad(p["separation"]), dlu.deg2rad(p["position_angle"])
        )
        mean_flux = 0.5 * 10.0 ** p["log_flux"]
        return pos, dlu.fluxes_from_contrast(mean_flux, p["contrast"])
