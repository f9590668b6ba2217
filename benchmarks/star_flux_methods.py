"""The VI lab's comparison on the star_flux zoo model: every method scored against truth and the grid.

For each of ``--datasets`` simulated data sets (16 images each, true fluxes drawn from the prior):
prior mean, sky-subtracted sum, exact grid posterior, NUTS, mean-field SVI and amortized VI (one
encoder trained on ``--train`` prior-simulated images, applied to every data set). Prints and writes:
flux RMSE against the truth; mean |posterior mean - grid mean| / grid sd; mean posterior sd / grid sd;
and the amortized throughput against per-image SVI.

    python benchmarks/star_flux_methods.py [--datasets 10] [--variant airy] [--out results/...json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

import starmodels as sm
from starmodels.infer.fit import versions

HERE = Path(__file__).parent


def _moments(post, method):
    if method == "grid":
        g = post.meta["grid"]
        return np.array(g["mean"]["source.flux"]), np.array(g["sd"]["source.flux"])
    d = post.draws()["source.flux"]
    d = d.reshape(-1, d.shape[-1])
    return d.mean(0), d.std(0)


def run(datasets: int, variant: str | None, train: int, seed: int) -> dict:
    z = sm.zoo.load("star_flux", variant)
    model = z.model
    background = z.card["fixed"]["detector.background"]
    prior_mean = float(model.priors()["source.flux"].loc)

    t0 = time.perf_counter()
    images, _ = z.simulate(seed=10_000 + seed, images=train)
    amort = sm.train_amortized(model, images, num_steps=4000, batch=128, seed=seed, progress=False)
    train_seconds = time.perf_counter() - t0

    est = {k: [] for k in ("prior mean", "sky-subtracted sum", "grid", "NUTS", "mean-field SVI",
                           "amortized VI")}
    sds = {k: [] for k in ("grid", "NUTS", "mean-field SVI", "amortized VI")}
    truth_all, seconds = [], {k: 0.0 for k in sds}
    for r in range(datasets):
        data, truth = z.simulate(seed=seed + r)
        truth_all.append(truth["source.flux"])
        est["prior mean"].append(np.full(data.shape[0], prior_mean))
        est["sky-subtracted sum"].append((data - background).sum(axis=(1, 2)))
        runs = {
            "grid": lambda d=data, s=r: sm.fit(model, d, method="grid", seed=s),
            "NUTS": lambda d=data, s=r: sm.fit(model, d, method="nuts", num_chains=2, num_warmup=500,
                                               num_draws=1000, seed=s, progress=False),
            "mean-field SVI": lambda d=data, s=r: sm.fit(model, d, method="svi", guide="meanfield",
                                                         num_steps=5000, num_draws=4000, seed=s,
                                                         progress=False),
            "amortized VI": lambda d=data, s=r: amort.posterior_for(d, num_draws=4000, seed=s),
        }
        for name, fn in runs.items():
            t = time.perf_counter()
            post = fn()
            seconds[name] += time.perf_counter() - t
            m, s = _moments(post, name if name == "grid" else "draws")
            est[name].append(m)
            sds[name].append(s)
        print(f"data set {r + 1}/{datasets} done", flush=True)

    truth = np.concatenate(truth_all)
    g_mean, g_sd = np.concatenate(est["grid"]), np.concatenate(sds["grid"])
    rows = []
    for name, values in est.items():
        m = np.concatenate(values)
        row = {"method": name, "flux_rmse": float(np.sqrt(np.mean((m - truth) ** 2)))}
        if name != "grid":
            row["mean_abs_dev_grid_sd"] = float(np.mean(np.abs(m - g_mean) / g_sd))
        if name in sds and name != "grid":
            row["sd_ratio"] = float(np.mean(np.concatenate(sds[name]) / g_sd))
        rows.append(row)

    # throughput: amortized forward passes against per-image SVI fits (compiled, warm)
    new, _ = z.simulate(seed=99_999, images=4096)
    amort.posterior_for(new[:256], num_draws=10, importance=False)  # compile the forward pass
    post = amort.posterior_for(new, num_draws=10, importance=False)
    one = model.resize(1)
    svi_wall, svi_run = [], []
    for i in range(4):  # every fit call traces and compiles its own program: report both
        t = time.perf_counter()
        fitted = sm.fit(one, new[i:i + 1], method="svi", guide="meanfield", num_steps=5000, seed=i,
                        num_restarts=1, progress=False)
        svi_wall.append(time.perf_counter() - t)
        svi_run.append(svi_wall[-1] - fitted.meta["compile_seconds"])
    per_image_svi = float(np.median(svi_run))
    return {
        "variant": variant or "triangle", "datasets": datasets, "images": int(truth.size), "seed": seed,
        "train_images": train, "train_seconds": train_seconds, "rows": rows,
        "method_seconds_total": seconds,
        "amortized_images_per_second": post.meta["images_per_second"],
        "per_image_svi_seconds": per_image_svi, "per_image_svi_wall_seconds": float(np.median(svi_wall)),
        "per_image_svi_images_per_second": 1.0 / per_image_svi,
        "speedup": post.meta["images_per_second"] * per_image_svi,
        "load_average": os.getloadavg(), "versions": versions(),
    }


def table(res: dict) -> str:
    lines = [f"star_flux ({res['variant']} PSF), {res['datasets']} data sets x 16 images = "
             f"{res['images']} images; amortized encoder trained on {res['train_images']} prior "
             f"images in {res['train_seconds']:.0f} s", "",
             "| method | flux RMSE (photons) | mean abs(mean - grid) / grid sd | sd / grid sd |",
             "|---|---|---|---|"]
    for r in res["rows"]:
        dev = f"{r['mean_abs_dev_grid_sd']:.3f}" if "mean_abs_dev_grid_sd" in r else "0 (reference)"
        ratio = f"{r['sd_ratio']:.3f}" if "sd_ratio" in r else ""
        lines.append(f"| {r['method']} | {r['flux_rmse']:.0f} | {dev} | {ratio} |")
    lines += ["", f"amortized VI: {res['amortized_images_per_second']:.0f} images/s (4096 images, "
              f"one forward pass per 256) against per-image mean-field SVI "
              f"{res['per_image_svi_images_per_second']:.2f} images/s "
              f"({res['per_image_svi_seconds']:.2f} s per image without compilation, MAP start included; "
              f"{res['per_image_svi_wall_seconds']:.2f} s per fit call with it): "
              f"{res['speedup']:.0f}x; load average {res['load_average'][0]:.1f}"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--variant", default=None, help="card variant, e.g. airy (default: the lab's triangle)")
    ap.add_argument("--train", type=int, default=20000, help="prior-simulated training images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/star_flux_methods"
                                                "[_variant].json; a .md table is written next to it)")
    args = ap.parse_args()
    res = run(args.datasets, args.variant, args.train, args.seed)
    text = table(res)
    print(text)
    out = Path(args.out) if args.out else (
        HERE / "results" / f"star_flux_methods{'_' + args.variant if args.variant else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=float))
    out.with_suffix(".md").write_text(f"`python benchmarks/star_flux_methods.py` output:\n\n{text}\n")


if __name__ == "__main__":
    main()
