"""Optics: a dLux ``AngularOpticalSystem`` with Zernike aberrations sampled in nanometres.

The dLux system (``TelescopeOptics.system``) defines the physics; ``psfs``
evaluates it faster than ``system.propagate`` per source would, with the same
conventions and numbers (to float rounding): the pupil phasor is built once
per wavelength from the system's aperture layer, and each source's tilt
enters the MFT as a per-row phase on transfer matrices precomputed at
construction with ``dLux.utils``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from functools import partial

import dLux as dl
import dLux.utils as dlu
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from starmodels.component import Component
from starmodels.priors import prior_from_spec

_APERTURE_OVERSAMPLE = 5  # sub-pixels per pupil pixel when anti-aliasing the aperture edge


def _noll_indices(j: int) -> tuple[int, int]:
    """Radial and azimuthal orders (n, m) of Noll index ``j``, in plain Python.

    The integer arithmetic of ``dLux.utils.noll_indices`` (which runs JAX ops
    and calls ``int()`` on them, so cannot be traced); same sign convention.
    """
    if j < 1:
        raise ValueError("The Zernike index must be greater than 0.")
    n = int(np.ceil(-1 / 2 + np.sqrt(1 + 8 * j) / 2)) - 1
    smallest_j_in_row = n * (n + 1) // 2 + 1
    number_of_shifts = (j - smallest_j_in_row + ~(n & 1) + 2) // 2
    sign_of_shift = -(j & 1) + ~(j & 1) + 2
    return n, sign_of_shift * ((n & 1) + number_of_shifts * 2)


def _zernike(j: int, coords, diameter):
    """Zernike polynomial ``j`` (Noll) on ``coords`` (2, n, n) m, traceable.

    ``dLux.utils.zernike(j, coords, diameter)`` with its factors built as in
    ``dLux.utils.zernike_factors`` but from :func:`_noll_indices`, so it
    can run inside ``jit``; dimensionless, zero outside ``diameter`` (m).
    """
    n, m = _noll_indices(j)
    k = jnp.arange(((n - m) // 2) + 1, dtype=float)
    factorial = jax.vmap(dlu.factorial)
    c = (
        jax.lax.pow(-1.0, k) * factorial(jnp.abs(n - k)) / factorial(k)
        / factorial(((n + m) // 2) - k) / factorial(((n - m) // 2) - k)
    )
    return dlu.zernike_fast(n, m, c, k, coords, diameter)


@partial(jax.jit, static_argnames=("wf_npixels", "noll", "spider", "psf_npixels", "oversample"))
def _construction_arrays(
    diameter, spider_width, spider_angles, wavelengths, weights, pixel_scale,
    *, wf_npixels: int, noll: tuple[int, ...], spider: bool, psf_npixels: int, oversample: int,
):
    """Every array :class:`TelescopeOptics` needs, in ONE compiled XLA program.

    diameter (m), spider_width (m), spider_angles (degrees, (k,)),
    wavelengths (m, (L,)), weights (relative, (L,)), pixel_scale (arcsec
    per detector pixel).

    Returns ``(transmission, basis, transfer, mft_norm, pupil_xs,
    wavelengths, weights)``:
    aperture transmission (wf_npixels, wf_npixels) in [0, 1]; Zernike basis
    (len(noll), wf_npixels, wf_npixels), metres of OPD per unit coefficient, as
    ``dLux.utils.zernike_basis`` gives it (None if ``noll`` is empty); the unshifted
    MFT transfer matrices (L, wf_npixels, psf_npixels * oversample) of
    ``dLux.utils.propagation.transfer_matrix`` from the pupil (``diameter / wf_npixels``
    m per pixel) to the focal grid (``pixel_scale / oversample`` arcsec per
    pixel, in radians); the MFT amplitude normalisation (L,), dimensionless
    ``nfringes / (n_in * n_out)`` exactly as ``dLux.utils.MFT`` applies it;
    and the pupil pixel-centre coordinates (wf_npixels,) in m, those of
    ``dLux.Wavefront.xs`` (used by ``Wavefront.tilt``); then the wavelengths
    (m) and the weights normalised to sum 1, as device arrays.
    """
    fine = dlu.pixel_coords(_APERTURE_OVERSAMPLE * wf_npixels, diameter)
    masks = [dlu.circle(fine, diameter / 2)]
    if spider:
        masks.append(dlu.spider(fine, spider_width, spider_angles))
    transmission = dlu.combine(jnp.stack(masks), _APERTURE_OVERSAMPLE)
    basis = None
    if noll:
        coords = dlu.pixel_coords(wf_npixels, diameter)
        basis = jnp.stack([_zernike(j, coords, diameter) for j in noll])

    # The focal grid of AngularOpticalSystem.to_focus, the MFT of Wavefront.propagate.
    npixels_out = psf_npixels * oversample
    pixel_scale_out = dlu.arcsec2rad(pixel_scale / oversample)

    def per_wavelength(wavelength):
        wf = dl.Wavefront(wavelength, wf_npixels, diameter)
        matrix = dlu.propagation.transfer_matrix(
            wavelength, wf_npixels, wf.pixel_scale, npixels_out, pixel_scale_out
        )
        nfringes = dlu.propagation.calc_nfringes(
            wavelength, wf_npixels, wf.pixel_scale, npixels_out, pixel_scale_out
        )
        norm = jnp.exp(jnp.log(nfringes) - (jnp.log(wf_npixels) + jnp.log(npixels_out)))
        return matrix, norm, wf.xs

    transfer, mft_norm, xs = jax.vmap(per_wavelength)(wavelengths)
    return transmission, basis, transfer, mft_norm, xs[0], wavelengths, weights / weights.sum()


class TelescopeOptics(Component):
    """A circular telescope (optional spiders) with Zernike wavefront error.

    Parameter ``zernike``: RMS wavefront error (nm) of each Zernike term, in
    the order of ``noll`` (Noll indices); ``noll=()`` with ``zernike=[]``
    gives the unaberrated (Airy) telescope. The PSF grid is ``psf_npixels``
    pixels of ``pixel_scale`` arcsec, each split into ``oversample`` squared
    sub-pixels (the detector sums them back).

    ``system`` is the dLux ``AngularOpticalSystem`` that defines the physics
    (``system.propagate(wavelengths, pos, weights)`` is the reference PSF);
    ``transfer``, ``mft_norm`` and ``pupil_xs`` are arrays precomputed from
    it at construction for :meth:`psfs`. They depend on ``wavelengths``,
    the pupil and the focal grid, so build a new ``TelescopeOptics`` to change
    any of those (``weights`` and the layers' parameters may be changed freely).
    """

    system: dl.AngularOpticalSystem
    wavelengths: jnp.ndarray  # metres, (L,)
    weights: jnp.ndarray  # relative photons per wavelength, sums to 1, (L,)
    transfer: jnp.ndarray  # complex (L, wf_npixels, psf_npixels * oversample): unshifted MFT matrices
    mft_norm: jnp.ndarray  # (L,) dimensionless MFT amplitude normalisation nfringes / (n_in n_out)
    pupil_xs: jnp.ndarray  # metres, (wf_npixels,): pupil pixel centres (rows: y, columns: x)
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
        """Build the dLux system and the arrays ``psfs`` needs (one XLA compilation).

        zernike: prior or fixed value (nm RMS per term); diameter (m),
        wf_npixels (pupil samples across ``diameter``), psf_npixels (detector
        pixels), pixel_scale (arcsec per detector pixel), oversample
        (sub-pixels per detector pixel per axis), noll (Noll indices),
        wavelengths_nm (nm), weights (relative photons per wavelength,
        default equal), spider_width (m, 0 for none), spider_angles (degrees,
        one per arm).
        """
        problems = []
        if isinstance(zernike, Mapping):  # a card's prior spec
            zernike = prior_from_spec(zernike, "optics.zernike")
        given = (tuple(zernike.batch_shape) + tuple(zernike.event_shape)
                 if isinstance(zernike, dist.Distribution) else np.shape(zernike))
        if given != (len(tuple(noll)),):  # before any array work
            raise ValueError(f"optics.zernike needs {len(tuple(noll))} values (Noll {list(noll)}), got "
                             f"shape {given}")
        super().__init__({"zernike": zernike})
        for label, v in (("diameter", diameter), ("pixel_scale", pixel_scale)):
            if not (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
                problems.append(f"{label} must be a finite number > 0, got {v!r}")
        try:
            wl_nm = np.asarray(wavelengths_nm, float)
        except (TypeError, ValueError):
            wl_nm = np.array([np.nan])
        if wl_nm.ndim != 1 or wl_nm.size == 0 or not np.all(np.isfinite(wl_nm) & (wl_nm > 0)):
            problems.append(f"wavelengths_nm must be finite wavelengths > 0 (nm), got {wavelengths_nm!r}")
        if spider_angles and not spider_width > 0:
            problems.append("spider_angles given but spider_width is not positive")
        if problems:
            raise ValueError("TelescopeOptics: " + "; ".join(problems))
        self.noll = tuple(int(j) for j in noll)
        # numpy in JAX's float dtype: the values jnp would give, without eager XLA ops
        dtype = jax.dtypes.canonicalize_dtype(np.float64)
        wl = np.asarray(wavelengths_nm, dtype) * dtype.type(1e-9)
        w = np.ones_like(wl) if weights is None else np.asarray(weights, dtype)
        if w.shape != wl.shape or bool(np.any(w < 0)):
            raise ValueError("weights must be non-negative, one per wavelength")

        spider = bool(spider_width > 0 and len(spider_angles) > 0)
        arrays = _construction_arrays(
            float(diameter), float(spider_width), np.asarray(spider_angles, float).reshape(-1),
            wl, w, float(pixel_scale), wf_npixels=int(wf_npixels), noll=self.noll, spider=spider,
            psf_npixels=int(psf_npixels), oversample=int(oversample),
        )
        transmission, basis = arrays[:2]
        if self.noll:
            coeffs = np.zeros(len(self.noll))
            layer = dl.layers.BasisOptic(basis, transmission, coeffs, normalise=True)
        else:  # unaberrated: an Airy pattern (plus spider diffraction)
            layer = dl.layers.TransmissiveLayer(transmission, normalise=True)
        self.system = dl.AngularOpticalSystem(
            wf_npixels, diameter, [("aperture", layer)], psf_npixels, pixel_scale, oversample
        )
        self.transfer, self.mft_norm, self.pupil_xs, self.wavelengths, self.weights = arrays[2:]

    @property
    def oversample(self) -> int:
        """Sub-pixels per detector pixel along each axis."""
        return self.system.oversample

    @property
    def psf_npixels(self) -> int:
        """Detector pixels along each axis of the PSF."""
        return self.system.psf_npixels

    @property
    def pixel_scale(self) -> float:
        """Detector pixel scale (arcsec)."""
        return float(self.system.psf_pixel_scale)

    def labels(self) -> dict[str, list]:
        """Noll index of each ``zernike`` element."""
        return {"zernike": list(self.noll)}

    def alternate_modes(self, p: dict) -> dict[str, dict]:
        """Aberrations that give (nearly) the same image: the sign of the point-symmetric terms flipped.

        Zernike terms of even azimuthal order m (defocus, astigmatism,
        spherical, ...) are symmetric under a 180-degree rotation. Through a
        pupil with that symmetry their first-order effect on the PSF
        vanishes, so the data fix their sign only through the pupil's
        asymmetries (a single spider arm) and second-order terms: a mode
        search must check the flipped signs too. ``p["zernike"]`` in nm.
        """
        if "zernike" not in p or not self.noll:
            return {}
        even = np.array([_noll_indices(j)[1] % 2 == 0 for j in self.noll])
        if not even.any():
            return {}
        return {"zernike_even_sign": {"zernike": p["zernike"] * jnp.asarray(np.where(even, -1.0, 1.0))}}

    def pupil(self, p: dict) -> jnp.ndarray:
        """Complex pupil field (L, wf_npixels, wf_npixels) per wavelength, on axis.

        ``p["zernike"]`` in nm RMS. The field that ``system.propagate`` feeds
        to the MFT for an on-axis source, before its sqrt(weight): the
        system's layers applied to a fresh ``dLux.Wavefront``, so
        transmission x exp(2 pi i OPD / lambda), normalised to unit power
        (sum |field|^2 = 1). Rows are y, columns x. Dimensionless.
        """
        real, imag = self._pupil_parts(p)
        return jax.lax.complex(real, imag)

    def _pupil_parts(self, p: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Real and imaginary parts of :meth:`pupil`, each (L, n, n).

        For the layer this class builds (one ``BasisOptic`` applying its
        basis as an OPD, or one ``TransmissiveLayer``, with ``normalise``)
        the field is evaluated directly from the layer's own arrays (its
        ``transmission``, its ``eval_basis()`` OPD in m), in real arithmetic:
        the same numbers as running the layer on a ``dLux.Wavefront`` (whose
        1/n^2 starting amplitude the normalisation removes), but without
        differentiating dLux's power normalisation through |phasor|, which
        is constant in the OPD and cost more than the rest of the gradient.
        Any other layer stack is run through dLux as is.
        """
        system = self.system
        if self.noll:
            coeffs = jnp.asarray(p["zernike"]) * 1e-9
            system = eqx.tree_at(lambda s: s.layers["aperture"].coefficients, system, coeffs)
        layers = list(system.layers.values())
        layer = layers[0]
        simple = (
            len(layers) == 1
            and type(layer) in (dl.layers.BasisOptic, dl.layers.TransmissiveLayer)
            and layer.normalise
            and layer.transmission is not None
            and not getattr(layer, "as_phase", False)
        )
        if not simple:

            def one(wavelength):
                wf = dl.Wavefront(wavelength, system.wf_npixels, system.diameter)
                for lay in layers:
                    wf = lay(wf)
                return wf.phasor

            phasor = jax.vmap(one)(self.wavelengths)
            return phasor.real, phasor.imag
        n = system.wf_npixels
        amplitude = jnp.broadcast_to(layer.transmission, (n, n))
        amplitude = amplitude / jnp.sqrt(jnp.sum(amplitude**2))  # Wavefront.normalise()
        shape = (self.wavelengths.shape[0], n, n)
        if type(layer) is dl.layers.TransmissiveLayer:
            return jnp.broadcast_to(amplitude, shape), jnp.zeros(shape, amplitude.dtype)
        wavenumber = 2 * jnp.pi / self.wavelengths  # Wavefront.wavenumber, rad / m
        phase = wavenumber[:, None, None] * layer.eval_basis()  # Wavefront.add_opd
        return amplitude * jnp.cos(phase), amplitude * jnp.sin(phase)

    def psfs(self, p: dict, positions: jnp.ndarray) -> jnp.ndarray:
        """Unit-flux PSFs (n, N*os, N*os) at ``positions`` (n, 2) radians (x, y).

        Equal (to float rounding) to ``system.propagate(wavelengths, pos,
        weights)`` for each position: the sum over wavelengths of weight x
        |MFT(tilted pupil)|^2, x along columns and y along rows, the MFT of
        ``dLux.utils.MFT`` (nfringes normalisation, ``mft_norm``) and the tilt
        of ``dLux.Wavefront.tilt``, exp(2 pi i (x theta_x + y theta_y) / lambda).
        ``p["zernike"]``: nm RMS.

        How: the pupil (:meth:`pupil`) is built once per wavelength for all
        sources; dLux applies the tilt before the layers, but they act
        pixel by pixel (transmission, OPD) so it commutes with them and,
        being separable, becomes a per-row phase on the transfer matrices:
        the field is Y^T P X with X = diag(t_x) T, Y = diag(t_y) T and T the
        unshifted ``transfer`` (2 x wf_npixels / 2 complex exponentials per
        source and wavelength). The pupil grid is symmetric about 0 and the
        tilted matrices are conjugate-symmetric in it (X[n-1-i] = conj X[i]),
        so each product runs in real arithmetic on the even and odd halves
        of its operand (pupil columns, then rows): two real matrix products
        with half the multiply-adds of the complex ones.
        """
        real, imag = self._pupil_parts(p)  # (L, n, n): rows y, columns x
        positions = jnp.asarray(positions, self.pupil_xs.dtype)
        n, m = real.shape[-1], self.transfer.shape[-1]
        wavenumber = 2 * jnp.pi / self.wavelengths  # (L,) rad / m
        kx = _half_transfer(self.transfer, self.pupil_xs, wavenumber, positions[:, 0])
        ky = _half_transfer(self.transfer, self.pupil_xs, wavenumber, positions[:, 1])
        # pupil @ X, columns folded: [re_e, im_o; im_e, -re_o] @ [C; S] = [re; im]
        re_e, re_o = _fold(real, -1)
        im_e, im_o = _fold(imag, -1)
        lhs = jnp.concatenate(
            [jnp.concatenate([re_e, im_o], -1), jnp.concatenate([im_e, -re_o], -1)], -2
        )  # (L, 2n, n)
        rows = jnp.einsum("lyk,lskm->lysm", lhs, kx)  # (L, 2n, S, M): re then im, rows y
        # Y^T @ that, rows folded the same way: [C; S]^T @ [re_e, im_e; im_o, -re_o]
        re_e, re_o = _fold(rows[:, :n], 1)
        im_e, im_o = _fold(rows[:, n:], 1)
        rhs = jnp.concatenate(
            [jnp.concatenate([re_e, im_o], 1), jnp.concatenate([im_e, -re_o], 1)], -1
        )  # (L, n, S, 2M)
        field = jnp.einsum("lskr,lksc->slrc", ky, rhs)  # (S, L, M, 2M): re | im, rows y
        intensity = field[..., :m] ** 2 + field[..., m:] ** 2
        return jnp.einsum("l,slrc->src", self.weights * self.mft_norm**2, intensity)


def _fold(a: jnp.ndarray, axis: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Even and odd parts of ``a`` about the centre of ``axis``.

    For n = 2h (+1) samples along ``axis`` on a grid symmetric about 0:
    even ``a[i] + a[n-1-i]`` for i < h (then the centre sample if n is
    odd), h + n % 2 long; odd ``a[i] - a[n-1-i]``, h long. Units of ``a``.
    """
    n = a.shape[axis]
    h = n // 2
    lo = jax.lax.slice_in_dim(a, 0, h, axis=axis)
    hi = jax.lax.slice_in_dim(jnp.flip(a, axis), 0, h, axis=axis)
    even = lo + hi
    if n % 2:
        even = jnp.concatenate([even, jax.lax.slice_in_dim(a, h, h + 1, axis=axis)], axis)
    return even, lo - hi


def _half_transfer(transfer, xs, wavenumber, angles) -> jnp.ndarray:
    """Tilted transfer matrices on the first half of the pupil, real form.

    transfer (L, n, M) complex, unshifted; xs (n,) m, pupil pixel centres,
    symmetric about 0; wavenumber (L,) rad/m; angles (S,) rad, one axis of
    the source offsets. X = diag(exp(i k angle xs)) transfer is conjugate-
    symmetric in the pupil index, X = C - i S with C even and S odd, so its
    first-half rows [C (h + n % 2 rows); S (h rows)] (L, S, n, M),
    dimensionless, are all of it that the folded products of ``psfs`` use.
    """
    n = xs.shape[0]
    h, k = n // 2, n // 2 + n % 2
    tilt = jnp.exp(1j * (angles[None, :, None] * (wavenumber[:, None] * xs[:k])[:, None, :]))
    x = tilt[..., None] * transfer[:, None, :k]  # (L, S, k, M)
    return jnp.concatenate([x.real, -x.imag[:, :, :h]], axis=2)
