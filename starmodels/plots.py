"""Plots: chainconsumer corner plots (one or several posteriors) and data/model/residual panels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from chainconsumer import Chain, ChainConsumer, PlotConfig, Truth

from starmodels.atomic import atomic_path
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


def _select(flat: dict, params, label: str) -> dict:
    """The flat parameters named by ``params``: whole sites (``optics.zernike``) or elements."""
    if params is None:
        return flat
    out, missing = {}, []
    for p in params:
        hits = [k for k in flat if k == p or k.startswith(p + "[")]
        if not hits:
            missing.append(p)
        out.update({k: flat[k] for k in hits})
    if missing:
        raise KeyError(f"{label}: no parameters {missing}; it has {sorted(flat)}")
    return out


def corner(posteriors: Posterior | Sequence[Posterior] | Mapping[str, Posterior], *,
           truth: Mapping | None = None, params: Sequence[str] | None = None, path=None,
           max_draws: int = 4000, seed: int = 0):
    """Corner plot with chainconsumer of every parameter, vector sites element by element.

    ``posteriors`` is one Posterior, a list, or a dict label -> Posterior
    (overlaid with a legend). Vector elements are labelled with their index
    labels (``optics.zernike[4]`` for Noll 4); names are printed as they are
    (no TeX). ``params`` selects by site name (every element of a vector) or
    element name. ``truth`` defaults to the truth stored in the first
    posterior. At most ``max_draws`` draws per posterior are drawn (thinned
    at random with ``seed``). Writes a PNG (atomically) if ``path`` is given;
    returns the figure. A single posterior's diagonal panels are titled
    with its mean and sd.
    """
    named = _named(posteriors)
    if not named:
        raise ValueError("corner needs at least one posterior")
    c = ChainConsumer()
    rng = np.random.default_rng(seed)
    first = next(iter(named.values()))
    columns = None
    for (label, post), colour in zip(named.items(), _COLOURS * 4, strict=False):
        flat = _select(post.flat_draws(), params, label)
        columns = columns or list(flat)
        df = pd.DataFrame({k: v.ravel() for k, v in flat.items()})
        if len(df) > max_draws:
            df = df.iloc[np.sort(rng.choice(len(df), max_draws, replace=False))]
        c.add_chain(Chain(samples=df.reset_index(drop=True), name=label, color=colour,
                          shade_alpha=0.25))
    truth = truth if truth is not None else first.meta.get("truth")
    if truth is not None:
        loc = {k: v for k, v in flat_truth(truth, first.meta.get("labels", {})).items() if k in columns}
        c.add_truth(Truth(location=loc, color="black"))
    # summaries off: chainconsumer writes them as TeX ($name = ...$), printing log_flux as log subscript flux
    c.set_plot_config(PlotConfig(max_ticks=3, spacing=1.0, tick_font_size=8, label_font_size=10,
                                 summarise=False, usetex=False))
    fig = c.plotter.plot()
    if len(named) == 1:
        n = len(columns)
        flat = first.flat_draws()
        grid = np.array(fig.axes).reshape(n, n) if len(fig.axes) == n * n else None
        for i, name in enumerate(columns if grid is not None else []):
            x = flat[name].ravel()
            grid[i, i].set_title(f"{name}\n{x.mean():.4g} ± {x.std(ddof=1):.3g}", fontsize=8)
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    return fig


@eqx.filter_jit
def _render(model, params):
    return model.render(params)


def residuals(model, data, params: Mapping, *, path=None, title: str | None = None):
    """Data, model at ``params`` and normalised residual (data - model) / sd, side by side."""
    mu = np.asarray(_render(model, {k: jnp.asarray(v) for k, v in params.items()}))
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
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png")
    return fig
