"""A channel of a scene: one image with its celestial WCS, noise map, mask and PSF (:class:`ChannelData`),
and the check that channels share a flux unit (:func:`check_units`).

A *channel* is one image of the scene: an instrument and band (or one plane of a multi-band cube) with
its own pixel grid and WCS. Conventions (as in :mod:`starmodels.sky.reproject` and
:mod:`starmodels.sky.masks`): arrays are indexed ``[row, col]`` = ``[y, x]``; masks are boolean with
**True = use the pixel**; pixel scales are in arcsec per pixel; ``sigma`` is a standard deviation in the
image's unit. Images are float64 in native byte order. Values of the image and of ``sigma`` at masked
pixels are left as read (they may be NaN or 0): masked pixels carry no weight in the noise models of
:mod:`starmodels.noise`. Problems are reported as :class:`ChannelError` (a ValueError) listing every
problem found, each naming the channel, the file, the HDU and what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS

from starmodels.io.observation import wcs_pixel_scale
from starmodels.sky.psf_images import normalized_psf
from starmodels.sky.reproject import celestial_wcs


class ChannelError(ValueError):
    """One or more channels cannot be read; ``problems`` lists every problem, one sentence each."""

    def __init__(self, problems: Sequence[str], note: str = ""):
        self.problems = list(problems)
        n = len(self.problems)
        text = f"{n} problem{'s' if n != 1 else ''} reading channels:" + "".join(
            f"\n  - {p}" for p in self.problems)
        super().__init__(text + (f"\n{note}" if note else ""))


# ----------------------------------------------------------------------------------------------------
# ChannelData
# ----------------------------------------------------------------------------------------------------

def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class ChannelData:
    """One channel: an image with its celestial WCS, noise map, mask and PSF (host-side numpy arrays).

    Attributes:
        name: unique label of the channel (e.g. ``"hsc_g"``), used in messages and results.
        image: ``(H, W)`` float64 array, native byte order, in ``unit`` per pixel. Read-only.
        wcs: 2-D celestial astropy WCS of ``image`` (0-based pixels; ``(x, y) = (col, row)``).
        unit: flux unit of ``image`` (FITS ``BUNIT`` or given); ``""`` = unknown / arbitrary or normalised
            units (see :func:`check_units`).
        sigma: ``(H, W)`` float64 per-pixel noise standard deviation in ``unit``, or None (no noise map:
            see :func:`estimate_sigma`). Values at masked pixels are arbitrary (NaN or 0 allowed).
        mask: ``(H, W)`` bool, True = use the pixel; at least one pixel is used.
        psf: ``(h, w)`` float64 PSF image with odd sides, centred on its middle pixel, summing to 1 and
            no larger than the image; or None.
        pixel_scale: arcsec per pixel, the square root of the WCS pixel area (derived when not given).
        band: band or filter name, or None.
        meta: where everything came from: files and HDUs used, how ``sigma`` and ``mask`` were made,
            the PSF's raw sum and re-centring shift, ... (see :func:`read_channel`).

    Constructing one directly validates and converts the arrays (image and sigma to float64, mask to
    bool, PSF normalised); the arrays are made read-only.
    """

    name: str
    image: np.ndarray
    wcs: WCS
    unit: str = ""
    sigma: np.ndarray | None = None
    mask: np.ndarray | None = None
    psf: np.ndarray | None = None
    pixel_scale: float | None = None
    band: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        problems = []
        if not isinstance(self.name, str) or not self.name:
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        image = np.asarray(self.image)
        if image.ndim != 2 or image.dtype.kind not in "biuf":
            problems.append(f"image must be a 2-D array of real numbers, got shape {image.shape} and dtype "
                            f"{image.dtype}")
            raise ValueError(f"ChannelData {self.name!r}: " + "; ".join(problems))
        shape = image.shape
        image = _readonly(np.array(image, dtype=np.float64))
        try:
            wcs = celestial_wcs("wcs", self.wcs)
        except ValueError as e:
            problems.append(str(e))
            wcs = None
        if not isinstance(self.unit, str):
            problems.append(f"unit must be a string ('' if unknown), got {self.unit!r}")
        sigma = None
        if self.sigma is not None:
            sigma = np.asarray(self.sigma)
            if sigma.shape != shape or sigma.dtype.kind not in "biuf":
                problems.append(f"sigma must be a real array of the image's shape {shape}, got shape "
                                f"{sigma.shape} and dtype {sigma.dtype}")
            else:
                sigma = _readonly(np.array(sigma, dtype=np.float64))
        if self.mask is None:
            mask = np.ones(shape, bool)
        else:
            mask = np.asarray(self.mask)
            if mask.shape != shape or mask.dtype != bool:
                problems.append(f"mask must be a boolean array (True = use) of the image's shape {shape}, "
                                f"got shape {mask.shape} and dtype {mask.dtype}")
            elif not mask.any():
                problems.append("the mask hides every pixel")
            mask = np.array(mask, dtype=bool) if mask.shape == shape else mask
        psf = None
        if self.psf is not None:
            try:
                psf = normalized_psf(self.psf, shape)
            except ValueError as e:
                problems.append(str(e))
        if self.band is not None and not isinstance(self.band, str):
            problems.append(f"band must be a string or None, got {self.band!r}")
        scale = self.pixel_scale
        if scale is None and wcs is not None:
            scale = wcs_pixel_scale(wcs)
        if scale is not None and not (isinstance(scale, int | float | np.floating) and math.isfinite(scale)
                                      and scale > 0):
            problems.append(f"pixel_scale must be a finite number > 0 (arcsec/pixel), got {scale!r}")
        if not isinstance(self.meta, dict):
            problems.append(f"meta must be a dict, got {type(self.meta).__name__}")
        if problems:
            raise ValueError(f"ChannelData {self.name!r}: " + "; ".join(problems))
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "wcs", wcs)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "mask", _readonly(mask))
        object.__setattr__(self, "psf", None if psf is None else _readonly(psf))
        object.__setattr__(self, "pixel_scale", float(scale))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``: rows and columns of the image, pixels."""
        return self.image.shape

    @property
    def n_used(self) -> int:
        """Number of pixels used (True in ``mask``)."""
        return int(self.mask.sum())

    def __repr__(self) -> str:
        sigma = "map" if self.sigma is not None else None
        return (f"ChannelData(name={self.name!r}, shape={self.shape}, unit={self.unit!r}, "
                f"band={self.band!r}, pixel_scale={self.pixel_scale:.4g} arcsec, sigma={sigma}, "
                f"used={self.n_used}/{self.image.size}, "
                f"psf={None if self.psf is None else self.psf.shape})")


# ----------------------------------------------------------------------------------------------------
# units
# ----------------------------------------------------------------------------------------------------

def _same_unit(a: str, b: str) -> bool:
    if a == b:
        return True
    if not a or not b:
        return False
    import astropy.units as u

    try:
        return u.Unit(a) == u.Unit(b)
    except (ValueError, TypeError):
        return False


def _conversion_hint(a: str, b: str) -> str:
    import astropy.units as u

    try:
        factor = u.Unit(a).to(u.Unit(b))
    except (ValueError, TypeError, u.UnitsError):
        return ""
    return f" ({a} -> {b}: multiply by {factor:.6g})"


def check_units(channels: Sequence[ChannelData], conversions: Mapping[str, float] | None = None
                ) -> dict[str, float]:
    """Check the channels can share one flux unit; the factor that puts each channel into it.

    Channels whose ``unit`` strings name the same unit (the same string, or spellings astropy reads as
    the same unit, e.g. ``"nJy"`` and ``"nanoJansky"``) agree. ``""`` means *unknown, arbitrary or
    normalised units* (e.g. images rescaled band by band): such channels agree with each other, but their
    flux scale is not known, so a model must give each of them a free amplitude (their fluxes cannot be
    compared with other channels'). A mix of ``""`` and a named unit, or of different named units, is an
    error unless ``conversions`` covers the channels involved.

    Args:
        channels: the channels (each with a ``name`` and a ``unit``).
        conversions: ``{channel name or unit string: factor}``: multiplying that channel's image (and
            sigma) by ``factor`` (> 0) expresses it in the common unit. A channel name takes precedence
            over a unit string. Channels not covered must all share one unit, the common unit.

    Returns:
        ``{channel name: factor}`` (1.0 for channels already in the common unit).

    Raises:
        ValueError: channels of different units without a conversion (naming every channel and unit, with
            the factor when astropy can convert one unit into the other), a bad factor, or duplicate names.
    """
    channels = list(channels)
    conversions = dict(conversions or {})
    names = [c.name for c in channels]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"check_units: channel names must be unique, got duplicates {dups}")
    bad = {k: v for k, v in conversions.items()
           if not (isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
                   and math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(f"check_units: conversion factors must be finite numbers > 0, got {bad}")
    factors: dict[str, float] = {}
    free: list[ChannelData] = []
    for c in channels:
        if c.name in conversions:
            factors[c.name] = float(conversions[c.name])
        elif c.unit in conversions:
            factors[c.name] = float(conversions[c.unit])
        else:
            free.append(c)
    groups: list[list[ChannelData]] = []
    for c in free:
        for g in groups:
            if _same_unit(g[0].unit, c.unit):
                g.append(c)
                break
        else:
            groups.append([c])
    if len(groups) > 1:
        listing = "; ".join(f"{g[0].unit or '(none)'}: {', '.join(repr(c.name) for c in g)}"
                            for g in groups)
        hints = "".join(_conversion_hint(g[0].unit, groups[0][0].unit) for g in groups[1:]
                        if g[0].unit and groups[0][0].unit)
        blank = (" A unit of '' means unknown or normalised units: such a channel needs a free amplitude "
                 "(give it a conversion only if you know its scale)." if any(not g[0].unit for g in groups)
                 else "")
        raise ValueError(f"channels have different units without a conversion: {listing}.{hints} Pass "
                         "conversions={channel name or unit: factor into the common unit}." + blank)
    for c in free:
        factors[c.name] = 1.0
    return {c.name: factors[c.name] for c in channels}
