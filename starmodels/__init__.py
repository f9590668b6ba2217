"""starmodels: astronomical image models as NumPyro programs, with dLux optics.

Importing starmodels sets the JAX host device count (``STARMODELS_HOST_DEVICES``,
default: CPU cores) and XLA's workarounds before JAX starts, so chains can run
in parallel, and turns on JAX's persistent compilation cache
(``STARMODELS_COMPILE_CACHE``; see :mod:`starmodels.startup`).
"""

from starmodels.startup import configure_compile_cache, configure_host_devices, fix_numpyro_pytree_order

configure_host_devices()
configure_compile_cache()
fix_numpyro_pytree_order()

from starmodels import zoo  # noqa: E402
from starmodels.atomic import ResultError  # noqa: E402
from starmodels.forward import ForwardModel  # noqa: E402
from starmodels.infer import fit, method_options, methods  # noqa: E402
from starmodels.infer.amortized import Amortizer, train_amortized  # noqa: E402
from starmodels.infer.registry import OptionError  # noqa: E402
from starmodels.plate import ImagePlate  # noqa: E402
from starmodels.protocol import DataError, Model, Site  # noqa: E402
from starmodels.results import Posterior  # noqa: E402

__all__ = ["Amortizer", "DataError", "ForwardModel", "ImagePlate", "Model", "OptionError", "Posterior",
           "ResultError", "Site", "catalog", "corner", "fit", "method_options", "methods", "train_amortized",
           "zoo"]
__version__ = "0.1.0"


def catalog(*args, **kwargs):
    """Catalog a crowded field with a tile model; see :func:`starmodels.tiles.api.catalog`."""
    from starmodels.tiles.api import catalog as _catalog

    return _catalog(*args, **kwargs)


def corner(*args, **kwargs):
    """Corner plot of one or more posteriors; see :func:`starmodels.plots.corner`."""
    from starmodels.plots import corner as _corner

    return _corner(*args, **kwargs)
