"""Optics: a dLux ``AngularOpticalSystem`` with Zernike aberrations sampled in nanometres."""

from __future__ import annotations

from collections.abc import Sequence

import dLux as dl
import dLux.utils as dlu
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from starmodels.component import Component

_APERTURE_OVERSAMPLE = 5  # sub-pixels per pupil pixel when anti-aliasing the aperture edge


class TelescopeOptics(Component):
    """A circular telescope (optional spiders) with Zernike wavefront error.

    Parameter ``zernike``: RMS wavefront error (nm) of each Zernike term, in
    the order of ``noll`` (Noll indices); ``noll=()`` with ``zernike=[]``
    gives the unaberrated (Airy) telescope. The PSF grid is ``psf_npixels``
    pixels of ``pixel_scale`` arcsec, each split into ``oversample`` squared
    sub-pixels (the detector sums them back).
    """

    system: dl.AngularOpticalSystem
    wavelengths: jnp.ndarray  # metres
    weights: jnp.ndarray  # relative photons per wavelength, sums to 1
    noll: tuple[int, ...] = eqx.field(static=True)
    role = "optics"
    param_names = ("zernike",)

    def __init__(
        self,
        zernike,
        *,
        diameter: float = 1.0,
        wf_npixels: int = 128,
        psf_npixels: int = 16,
        pixel_scale: float = 0.03,
        oversample: int = 1,
        noll: Sequence[int] = tuple(range(4, 11)),
        wavelengths_nm: Sequence[float] = (600.0,),
        weights: Sequence[float] | None = None,
        spider_width: float = 0.0,
        spider_angles: Sequence[float] = (),
    ):
        """Build the dLux system.

        diameter (m), pixel_scale (arcsec), wavelengths_nm (nm), spider_width
        (m, 0 for none), spider_angles (degrees, one per arm).
        """
        super().__init__({"zernike": zernike})
        if diameter <= 0 or pixel_scale <= 0:
            raise ValueError("diameter and pixel_scale must be positive")
        if spider_angles and spider_width <= 0:
            raise ValueError("spider_angles given but spider_width is not positive")
        self.noll = tuple(int(j) for j in noll)
        fine = dlu.pixel_coords(_APERTURE_OVERSAMPLE * wf_npixels, diameter)
        masks = [dlu.circle(fine, diameter / 2)]
        if spider_width > 0 and spider_angles:
            masks.append(dlu.spider(fine, spider_width, jnp.asarray(spider_angles, float)))
        transmission = dlu.combine(jnp.stack(masks), _APERTURE_OVERSAMPLE)
        if self.noll:
            basis = dlu.zernike_basis(self.noll, dlu.pixel_coords(wf_npixels, diameter), diameter)
            layer = dl.layers.BasisOptic(basis, transmission, jnp.zeros(len(self.noll)), normalise=True)
        else:  # unaberrated: an Airy pattern (plus spider diffraction)
            layer = dl.layers.TransmissiveLayer(transmission, normalise=True)
        self.system = dl.AngularOpticalSystem(
            wf_npixels, diameter, [("aperture", layer)], psf_npixels, pixel_scale, oversample
        )
        wl = jnp.asarray(wavelengths_nm, float) * 1e-9
        w = jnp.ones_like(wl) if weights is None else jnp.asarray(weights, float)
        if w.shape != wl.shape or bool(jnp.any(w < 0)):
            raise ValueError("weights must be non-negative, one per wavelength")
        self.wavelengths, self.weights = wl, w / w.sum()
        prior_shape = jnp.shape(self.fixed().get("zernike", np.zeros(len(self.noll))))
        for d in self.priors().values():
            prior_shape = d.batch_shape
        if prior_shape != (len(self.noll),):
            raise ValueError(
                f"optics.zernike needs {len(self.noll)} values (Noll {list(self.noll)}), "
                f"got shape {prior_shape}"
            )

    @property
    def oversample(self) -> int:
        return self.system.oversample

    @property
    def psf_npixels(self) -> int:
        return self.system.psf_npixels

    @property
    def pixel_scale(self) -> float:
        return float(self.system.psf_pixel_scale)

    def labels(self) -> dict[str, list]:
        return {"zernike": list(self.noll)}

    def psfs(self, p: dict, positions: jnp.ndarray) -> jnp.ndarray:
        """Unit-flux PSFs (n, N*os, N*os) at ``positions`` (n, 2) radians."""
        system = self.system
        if self.noll:
            coeffs = jnp.asarray(p["zernike"]) * 1e-9
            system = eqx.tree_at(lambda s: s.layers["aperture"].coefficients, system, coeffs)
        one = lambda pos: system.propagate(self.wavelengths, pos, self.weights)  # noqa: E731
        return jax.vmap(one)(positions)
