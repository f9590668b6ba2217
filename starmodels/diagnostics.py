"""Diagnostics: divergences, convergence checks and truth z-scores."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

log = logging.getLogger("starmodels")

RHAT_MAX = 1.01


def flat_items(name: str, values: np.ndarray, labels: list | None):
    """Yield (flat name, array over draws) for a site with shape (chain, draw, *event)."""
    event = values.shape[2:]
    if not event:
        yield name, values
        return
    flat = values.reshape(values.shape[:2] + (-1,))
    if labels is None or len(labels) != flat.shape[-1]:
        labels = [",".join(map(str, i)) for i in np.ndindex(event)]
    for i, lab in enumerate(labels):
        yield f"{name}[{lab}]", flat[..., i]


def flat_truth(truth: Mapping, labels: Mapping[str, list]) -> dict[str, float]:
    """Truth dict with vector sites split as ``name[label]``."""
    out = {}
    for name, value in truth.items():
        arr = np.asarray(value, float)
        if arr.ndim == 0:
            out[name] = float(arr)
            continue
        labs = labels.get(name) or list(range(arr.size))
        for lab, v in zip(labs, arr.ravel(), strict=True):
            out[f"{name}[{lab}]"] = float(v)
    return out


def truth_table(draws: Mapping[str, np.ndarray], truth: Mapping[str, float], prob: float = 0.94):
    """Per parameter: truth, posterior mean and sd, z-score, and whether truth is in the central interval."""
    rows = []
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    for name, t in truth.items():
        if name not in draws:
            continue
        x = np.asarray(draws[name]).ravel()
        lo, hi = np.quantile(x, [lo_q, hi_q])
        sd = x.std(ddof=1)
        rows.append({"param": name, "truth": t, "mean": x.mean(), "sd": sd,
                     "z": (x.mean() - t) / sd, "lo": lo, "hi": hi, "inside": bool(lo <= t <= hi)})
    return pd.DataFrame(rows).set_index("param")


def warn_on_problems(summary: pd.DataFrame, divergences: int, draws: int) -> list[str]:
    """Log and return warnings: divergent transitions, r_hat above 1.01, tiny ESS."""
    msgs = []
    if divergences:
        msgs.append(f"{divergences} divergent transition(s) out of {draws}: the posterior may be "
                     "biased; reparameterise or raise target_accept")
    if "r_hat" in summary:
        bad = summary.index[summary["r_hat"] > RHAT_MAX].tolist()
        if bad:
            msgs.append(f"r_hat > {RHAT_MAX} for {bad}: chains disagree, run longer")
    if "ess_bulk" in summary:
        low = summary.index[summary["ess_bulk"] < 100].tolist()
        if low:
            msgs.append(f"ess_bulk < 100 for {low}")
    for m in msgs:
        log.warning(m)
    return msgs


KHAT_GOOD, KHAT_BAD = 0.5, 0.7


def psis_khat(log_weights: np.ndarray) -> float:
    """Pareto k-hat of importance weights p/q (Yao et al. 2018): < 0.5 good, > 0.7 unreliable."""
    import arviz as az

    lw = np.asarray(log_weights, float)
    if not np.isfinite(lw).any():
        return float("inf")
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    _, khat = az.psislw(lw)
    return float(np.asarray(khat))


def khat_message(khat: float | None) -> str | None:
    """A warning for VI results whose guide should not be trusted, else None."""
    if khat is None or khat <= KHAT_BAD:
        return None
    return (f"PSIS k-hat = {khat:.2f} > {KHAT_BAD}: the variational approximation is unreliable "
            "for this posterior (try a richer guide or NUTS)")
