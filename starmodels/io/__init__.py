"""Reading real images: :class:`Observation`, generic FITS I/O, SDSS frames and PSFs.

Pixel convention: arrays are ``[row, col]``, coordinates 0-based with pixel centres at integers.

Bad input files raise :class:`FileFormatError` (not FITS, empty, truncated, corrupt, unexpected
content), :class:`ExtensionNotFoundError` (a missing extension) or :class:`ObservationError` (arrays
that do not make a valid observation); every message names the file and the problem.
"""

from starmodels.io.fits import (
    ExtensionNotFoundError,
    FileFormatError,
    open_fits,
    read_image,
    read_wcs,
    write_image,
    write_observation,
)
from starmodels.io.observation import Observation, ObservationError, wcs_pixel_scale
from starmodels.io.psfield import KLPsf, PSFImage, read_psfield_calibration, sdss_psf
from starmodels.io.sdss import (
    download_sdss_frame,
    download_sdss_photofield,
    download_sdss_psfield,
    read_photofield_calibration,
    read_sdss_frame,
    sdss_cache_dir,
    sdss_sky,
    sdss_url,
)

__all__ = [
    "ExtensionNotFoundError",
    "FileFormatError",
    "KLPsf",
    "Observation",
    "ObservationError",
    "PSFImage",
    "download_sdss_frame",
    "download_sdss_photofield",
    "download_sdss_psfield",
    "open_fits",
    "read_image",
    "read_photofield_calibration",
    "read_psfield_calibration",
    "read_sdss_frame",
    "read_wcs",
    "sdss_cache_dir",
    "sdss_psf",
    "sdss_sky",
    "sdss_url",
    "wcs_pixel_scale",
    "write_image",
    "write_observation",
]
