"""starmodels: astronomical image models as NumPyro programs, with dLux optics.

Importing starmodels sets the JAX host device count (``STARMODELS_HOST_DEVICES``,
default: CPU cores) and XLA's workarounds before JAX starts, so chains can run
in parallel (see :mod:`starmodels.startup`).
"""

from starmodels.startup import configure_host_devices

configure_host_devices()

from starmodels import zoo  # noqa: E402
from starmodels.forward import DataError, ForwardModel  # noqa: E402
from starmodels.infer import fit  # noqa: E402
from starmodels.infer.amortized import Amortizer, train_amortized  # noqa: E402
from starmodels.plate import ImagePlate  # noqa: E402
from starmodels.results import Posterior  # noqa: E402

__all__ = ["Amortizer", "DataError", "ForwardModel", "ImagePlate", "Posterior", "corner", "fit",
           "train_amortized", "zoo"]
__version__ = "0.1.0"


def corner(*args, **kwargs):
    """Corner plot of one or more posteriors; see :func:`starmodels.plots.corner`."""
    from starmodels.plots import corner as _corner

    return _corner(*args, **kwargs)
