"""Posterior: an ArviZ InferenceData plus run metadata; summary, save and load."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

from starmodels.atomic import ResultError, atomic_path, check_manifest, write_manifest
from starmodels.diagnostics import (
    KHAT_BAD,
    KHAT_GOOD,
    flat_items,
    flat_truth,
    khat_message,
    truth_table,
    warn_on_problems,
)

_META_KEY = "starmodels_meta"
POSTERIOR_FILE, SUMMARY_FILE = "posterior.nc", "summary.csv"
log = logging.getLogger("starmodels")


def _json_default(o):
    if isinstance(o, np.ndarray | np.generic):
        return o.tolist()
    try:
        return np.asarray(o).tolist()
    except Exception:  # pragma: no cover - last resort for odd objects
        return str(o)


def build_idata(draws: Mapping[str, np.ndarray], labels: Mapping[str, list],
                sample_stats: Mapping[str, np.ndarray] | None = None,
                observed: np.ndarray | None = None, log_likelihood: np.ndarray | None = None):
    """InferenceData from per-site draws of shape (chain, draw, *event)."""
    coords, dims = {}, {}
    for name, arr in draws.items():
        extra = np.shape(arr)[2:]
        if len(extra) == 1 and name in labels and len(labels[name]) == extra[0]:
            coords[f"{name}_dim"] = list(labels[name])
            dims[name] = [f"{name}_dim"]
    obs = {"obs": np.asarray(observed)} if observed is not None else None
    ll = {"obs": np.asarray(log_likelihood)} if log_likelihood is not None else None
    pixels = observed if observed is not None else None if ll is None else ll["obs"][0, 0]
    if pixels is not None:
        dims["obs"] = ["image", "y", "x"][3 - np.ndim(pixels):]
    return az.from_dict(posterior={k: np.asarray(v) for k, v in draws.items()},
                        sample_stats=dict(sample_stats) if sample_stats else None,
                        observed_data=obs, log_likelihood=ll, coords=coords, dims=dims)


@dataclass
class Posterior:
    """Draws (``idata``, an :class:`arviz.InferenceData`) and how they were made (``meta``)."""

    idata: az.InferenceData
    meta: dict = field(default_factory=dict)

    # -- access -----------------------------------------------------------
    @property
    def method(self) -> str:
        """The inference method that made the draws (``nuts``, ``svi``, ``grid``, ``amortized``)."""
        return self.meta.get("method", "?")

    @property
    def param_names(self) -> list[str]:
        """Site names of the posterior draws, in program order."""
        return list(self.idata.posterior.data_vars)

    def draws(self) -> dict[str, np.ndarray]:
        """Site name -> array (chain, draw, *event), physical units."""
        return {k: v.values for k, v in self.idata.posterior.data_vars.items()}

    def flat_draws(self) -> dict[str, np.ndarray]:
        """Scalar name (``optics.zernike[4]``) -> array (chain, draw)."""
        labels = self.meta.get("labels", {})
        out = {}
        for name, arr in self.draws().items():
            out.update(dict(flat_items(name, arr, labels.get(name))))
        return out

    def mean(self) -> dict[str, np.ndarray]:
        """Posterior mean of every site (for rendering a model image)."""
        return {k: v.mean(axis=(0, 1)) for k, v in self.draws().items()}

    @property
    def divergences(self) -> int:
        """Divergent transitions after warmup (MCMC; 0 otherwise)."""
        ss = getattr(self.idata, "sample_stats", None)
        if ss is None or "diverging" not in ss:
            return 0
        return int(ss["diverging"].values.sum())

    # -- reporting --------------------------------------------------------
    @property
    def is_mcmc(self) -> bool:
        """True for Markov chain draws (NUTS): r_hat and ESS apply."""
        return self.method == "nuts"

    def summary(self, hdi_prob: float = 0.94, warn: bool = True) -> pd.DataFrame:
        """Per scalar parameter: mean, sd, HDI; for MCMC also MCSE, ess_bulk, ess_tail, r_hat.

        VI draws are independent draws from the guide, so R-hat and ESS would
        mean nothing there; VI is judged by PSIS k-hat (:meth:`diagnostics`).
        """
        table = az.summary(self.idata, hdi_prob=hdi_prob, kind="all" if self.is_mcmc else "stats",
                           round_to="none")  # unrounded: r_hat 1.0118 must not read as 1.01
        if self.method == "grid":  # quadrature moments, not Monte Carlo estimates
            labels = self.meta.get("labels", {})
            for col in ("mean", "sd"):
                exact = flat_truth(self.meta["grid"][col], labels)
                table[col] = [exact[k] for k in table.index]
        if warn:
            if self.is_mcmc:
                n = self.idata.posterior.sizes["chain"] * self.idata.posterior.sizes["draw"]
                warn_on_problems(table, self.divergences, n)
            elif (msg := khat_message(self.meta.get("khat"))) is not None:
                log.warning(msg)
        return table

    def diagnostics(self) -> dict:
        """Method-appropriate checks: divergences and worst r_hat/ESS for MCMC; k-hat and ELBO for VI."""
        if self.is_mcmc:
            table = self.summary(warn=False)
            return {"divergences": self.divergences, "max_r_hat": float(table["r_hat"].max()),
                    "min_ess_bulk": float(table["ess_bulk"].min()),
                    "min_ess_tail": float(table["ess_tail"].min())}
        if self.method == "grid":
            return {"edge_mass": self.meta["edge_mass"], "points_per_sd": self.meta["points_per_sd"],
                    "blocks": self.meta["blocks"]}
        k = self.meta.get("khat")
        verdict = ("n/a (point estimate)" if k is None else "good" if k < KHAT_GOOD
                   else "ok" if k <= KHAT_BAD else "unreliable")
        return {"khat": k, "khat_verdict": verdict, "final_elbo": self.meta.get("final_elbo"),
                "converged": self.meta.get("converged")}

    def check_truth(self, truth: Mapping, prob: float = 0.94) -> pd.DataFrame:
        """Compare with known true values: z-score and whether truth is inside the interval."""
        return truth_table(self.flat_draws(), flat_truth(truth, self.meta.get("labels", {})), prob)

    def __repr__(self) -> str:
        post = self.idata.posterior if self.idata is not None else None
        shape = "" if post is None else f", chains={post.sizes['chain']}, draws={post.sizes['draw']}"
        model = self.meta.get("model", "?")
        return f"Posterior({model}, method={self.method}{shape}, params={self.param_names})"

    # -- persistence ------------------------------------------------------
    def to_netcdf(self, path) -> Path:
        """Write everything (draws, sample stats, data, metadata) to one NetCDF file, atomically.

        The file is written under a temporary name and renamed into place, so
        an interrupted write leaves the previous file (or none), never a partial one.
        """
        path = Path(path)
        idata = self.idata.copy()
        idata.posterior.attrs[_META_KEY] = json.dumps(self.meta, default=_json_default)
        with atomic_path(path) as tmp:
            idata.to_netcdf(str(tmp))
        return path

    @classmethod
    def from_netcdf(cls, path) -> Posterior:
        """Read a file written by :meth:`to_netcdf`; ``ResultError`` if it is missing or not one."""
        path = Path(path)
        if not path.is_file():
            raise ResultError(f"no result file {path}")
        try:
            idata = az.from_netcdf(str(path))
            meta = json.loads(idata.posterior.attrs.pop(_META_KEY))
        except (OSError, KeyError, ValueError, AttributeError) as err:
            raise ResultError(f"{path} is not a complete starmodels result ({type(err).__name__}: {err})") \
                from None
        return cls(idata=idata, meta=meta)

    def save(self, folder, extra: Sequence[str] = ()) -> Path:
        """Write ``posterior.nc`` and ``summary.csv`` to ``folder``, then its manifest (last).

        ``extra`` names further files already written to the folder (plots,
        catalogs) for the manifest. Every file is written atomically.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.to_netcdf(folder / POSTERIOR_FILE)
        with atomic_path(folder / SUMMARY_FILE) as tmp:
            self.summary(warn=False).to_csv(tmp)
        files = [POSTERIOR_FILE, SUMMARY_FILE, *extra]
        write_manifest(folder, files, {"model": self.meta.get("model"), "method": self.method})
        return folder

    @classmethod
    def load(cls, folder) -> Posterior:
        """Read a result folder written by :meth:`save`, after checking it against its manifest."""
        folder = Path(folder)
        check_manifest(folder)
        return cls.from_netcdf(folder / POSTERIOR_FILE)

