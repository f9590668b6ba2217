"""Plots: chainconsumer corner plots (one or several posteriors) and data/model/residual panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from chainconsumer import Chain, ChainConsumer, PlotConfig, Truth

from starmodels.diagnostics import flat_truth
from starmodels.results import Posterior

_COLOURS = ("#1b6ca8", "#d1495b", "#2e8b57", "#edae49", "#6a4c93")


def _named(posteriors) -> dict[str, Posterior]:
    if isinstance(posteriors, Posterior):
        return {posteriors.method.upper(): posteriors}
    if isinstance(posteriors, Mapping):
        return dict(posteriors)
    out = {}
    for p in posteriors:
        label = p.method.upper()
        out[label if label not in out else f"{label} ({len(out) + 1})"] = p
    return out


def corner(posteriors: Posterior | Sequence[Posterior] | Mapping[str, Posterior], *,
           truth: Mapping | None = None, params: Sequence[str] | None = None, path=None,
           max_draws: int = 4000, seed: int = 0):
    """Corner plot with chainconsumer: vector sites flattened (``optics.zernike[4]``).

    ``posteriors`` is one Posterior, a list, or a dict label -> Posterior
    (overlaid with a legend). ``truth`` defaults to the truth stored in the
    first posterior's metadata. ``params`` selects flat parameter names.
    At most ``max_draws`` draws per posterior are drawn (thinned at random
    with ``seed``). Writes a PNG if ``path`` is given; returns the figure.
    """
    named = _named(posteriors)
    if not named:
        raise ValueError("corner needs at least one posterior")
    c = ChainConsumer()
    rng = np.random.default_rng(seed)
    first = next(iter(named.values()))
    for (label, post), colour in zip(named.items(), _COLOURS * 4, strict=False):
        flat = post.flat_draws()
        if params is not None:
            missing = [p for p in params if p not in flat]
            if missing:
                raise KeyError(f"{label}: no parameters {missing}; it has {sorted(flat)}")
            flat = {p: flat[p] for p in params}
        df = pd.DataFrame({k: v.ravel() for k, v in flat.items()})
        if len(df) > max_draws:
            df = df.iloc[np.sort(rng.choice(len(df), max_draws, replace=False))]
        c.add_chain(Chain(samples=df.reset_index(drop=True), name=label, color=colour,
                          shade_alpha=0.25))
    truth = truth if truth is not None else first.meta.get("truth")
    if truth is not None:
        loc = flat_truth(truth, first.meta.get("labels", {}))
        if params is not None:
            loc = {k: v for k, v in loc.items() if k in params}
        c.add_truth(Truth(location=loc, color="black"))
    c.set_plot_config(PlotConfig(max_ticks=3, spacing=1.0, tick_font_size=8, label_font_size=10))
    fig = c.plotter.plot()
    if path is not None:
        fig.savefig(path, dpi=90, bbox_inches="tight")
    return fig


def residuals(model, data, params: Mapping, *, path=None, title: str | None = None):
    """Data, model at ``params`` and normalised residual (data - model) / sd, side by side."""
    mu = np.asarray(model.render({k: jnp.asarray(v) for k, v in params.items()}))
    data = np.asarray(data, float)
    if data.ndim == 3:  # a plate of images: show the first
        title = f"{title or model.name}, image 0 of {data.shape[0]}"
        mu, data = mu[0], data[0]
    noise_p = {**model.noise.fixed(), **{k.split(".", 1)[1]: params[k] for k in params
                                         if k.startswith("noise.")}}
    sd = np.asarray(model.noise.distribution(jnp.asarray(mu), noise_p).variance) ** 0.5
    use = model.noise.use(data.shape)
    resid = np.where(use, (data - mu) / sd, np.nan)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    lim = max(np.nanmax(np.abs(resid)), 1e-9)
    panels = [(np.where(use, data, np.nan), "data", "inferno", None),
              (mu, "model", "inferno", None),
              (resid, "(data - model) / sd", "RdBu_r", (-lim, lim))]
    for ax, (img, name, cmap, clim) in zip(axes, panels, strict=True):
        im = ax.imshow(img, origin="lower", cmap=cmap,
                       vmin=None if clim is None else clim[0], vmax=None if clim is None else clim[1])
        ax.set_title(name)
        fig.colorbar(im, ax=ax, shrink=0.85)
    chi2 = np.nansum(resid**2) / max(int(use.sum()), 1)
    fig.suptitle(f"{title or model.name}: chi2/pixel = {chi2:.2f}")
    if path is not None:
        fig.savefig(path, dpi=90)
    return fig
