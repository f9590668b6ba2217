"""VI against the exact grid posterior on star_flux: mean-field SVI at its defaults, amortized raw and
importance-corrected.

For ``--datasets`` simulated data sets of the zoo model ``star_flux`` (16 images each, true fluxes from
the prior): the exact grid posterior; mean-field SVI with every option at its default (and the same
fit with 20000 draws, which separates the guide's own error from the Monte Carlo error of 2000
draws); one amortized encoder trained on ``--train`` prior images, applied to every image, raw and
with the PSIS importance correction (the default of ``Amortizer.posterior_for``). Per method: the
largest and mean |posterior mean - grid mean| / grid sd over all images, the range of posterior sd /
grid sd, PSIS k-hat, SVI steps and stop reasons. Targets (issue 9): SVI within 0.05 grid sd,
importance-corrected amortized within 0.1.

    python -m benchmarks.star_flux_vi [--datasets 10] [--train 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

import starmodels as sm
from benchmarks.record import write_record


def _score(draws: np.ndarray, g_mean: np.ndarray, g_sd: np.ndarray) -> dict:
    """draws (n, images) against the grid moments (images,)."""
    dev = np.abs(draws.mean(0) - g_mean) / g_sd
    ratio = draws.std(0) / g_sd
    return {"max_dev_sd": float(dev.max()), "mean_dev_sd": float(dev.mean()),
            "sd_ratio_min": float(ratio.min()), "sd_ratio_max": float(ratio.max())}


def run(datasets: int, train: int, seed: int) -> dict:
    z = sm.zoo.load("star_flux")
    model = z.model
    grid_mean, grid_sd, data_all, fits = [], [], [], {"svi": [], "svi_20000": []}
    svi_meta = []
    t_svi = 0.0
    for r in range(datasets):
        data, _ = z.simulate(seed=seed + r)
        g = sm.fit(model, data, method="grid", seed=r, progress=False)
        grid_mean.append(np.array(g.meta["grid"]["mean"]["source.flux"]))
        grid_sd.append(np.array(g.meta["grid"]["sd"]["source.flux"]))
        data_all.append(data)
        t = time.perf_counter()
        v = sm.fit(model, data, method="svi", guide="meanfield", seed=r, progress=False)
        t_svi += time.perf_counter() - t
        svi_meta.append(v.meta)
        fits["svi"].append(v.draws()["source.flux"][0])
        big = sm.fit(model, data, method="svi", guide="meanfield", seed=r, progress=False, num_draws=20000)
        fits["svi_20000"].append(big.draws()["source.flux"][0])
    g_mean, g_sd = np.concatenate(grid_mean), np.concatenate(grid_sd)
    images = np.concatenate(data_all)
    rows = {k: _score(np.concatenate(v, axis=1), g_mean, g_sd) for k, v in fits.items()}
    rows["svi"].update(khat_max=float(max(m["khat"] for m in svi_meta)),
                       steps=[m["steps_run"] for m in svi_meta],
                       stop_reasons=dict(Counter(m["stop_reason"] for m in svi_meta)),
                       seconds_per_fit=t_svi / datasets)

    t0 = time.perf_counter()
    train_images, _ = z.simulate(seed=10_000 + seed, images=train)
    amort = sm.train_amortized(model, train_images, num_steps=4000, batch=128, seed=seed, progress=False)
    train_seconds = time.perf_counter() - t0
    for name, importance in (("amortized_raw", False), ("amortized_psis", True)):
        t = time.perf_counter()
        post = amort.posterior_for(images, seed=seed, importance=importance)
        seconds = time.perf_counter() - t
        rows[name] = _score(post.draws()["source.flux"][0], g_mean, g_sd)
        rows[name].update(khat_max=post.meta["khat"], khat_median=post.meta["khat_median"],
                          seconds=seconds, images_per_second=len(images) / seconds)
    return {"datasets": datasets, "images": int(g_mean.size), "train_images": train,
            "train_seconds": train_seconds, "seed": seed, "rows": rows}


def table(res: dict) -> str:
    names = {"svi": "mean-field SVI, defaults (2000 draws)", "svi_20000": "mean-field SVI, 20000 draws",
             "amortized_raw": "amortized, raw encoder", "amortized_psis": "amortized, PSIS-corrected"}
    lines = [f"star_flux: {res['datasets']} data sets x 16 = {res['images']} images; encoder trained on "
             f"{res['train_images']} prior images in {res['train_seconds']:.0f} s", "",
             "| method | max abs(mean - grid) / grid sd | mean of it | sd / grid sd | k-hat (max) |",
             "|---|---|---|---|---|"]
    for key, label in names.items():
        r = res["rows"][key]
        kh = f"{r['khat_max']:.2f}" if "khat_max" in r else ""
        lines.append(f"| {label} | {r['max_dev_sd']:.3f} | {r['mean_dev_sd']:.3f} | "
                     f"{r['sd_ratio_min']:.3f} - {r['sd_ratio_max']:.3f} | {kh} |")
    s = res["rows"]["svi"]
    lines += ["", f"SVI: steps {min(s['steps'])}-{max(s['steps'])}, stop reasons {s['stop_reasons']}, "
              f"{s['seconds_per_fit']:.1f} s per fit (16 images) including compilation of the first"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    res = run(args.datasets, args.train, args.seed)
    text = table(res)
    print(text)
    rows = res["rows"]
    targets = {
        "svi": {"target": "mean-field SVI at defaults: max |mean - grid| <= 0.05 grid sd",
                "value": f"{rows['svi']['max_dev_sd']:.3f}", "met": rows["svi"]["max_dev_sd"] <= 0.05},
        "amortized": {"target": "importance-corrected amortized: max |mean - grid| <= 0.1 grid sd",
                      "value": f"{rows['amortized_psis']['max_dev_sd']:.3f}",
                      "met": rows["amortized_psis"]["max_dev_sd"] <= 0.1},
    }
    write_record("star_flux_vi", res, targets=targets, table=text)


if __name__ == "__main__":
    main()
