"""NUTS against the SVI guides on binary_star: one corner plot, one table.

Fits the binary_star zoo model's simulated data (seed ``--seed``) with NUTS (the card's defaults) and
with each guide, and reports per guide: PSIS k-hat, the largest |VI mean - NUTS mean| / NUTS sd, the
range of VI sd / NUTS sd over the 13 parameters, steps, whether the ELBO stopped improving, and
wall time. Writes the table, a JSON record and a corner plot of NUTS, full-rank and mean-field VI.

    python benchmarks/binary_star_guides.py [--guides meanfield lowrank fullrank iaf] [--steps 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import starmodels as sm
from starmodels.infer.fit import versions

HERE = Path(__file__).parent


def _flat(post):
    return {k: v.ravel() for k, v in post.flat_draws().items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--guides", nargs="+", default=["meanfield", "lowrank", "fullrank", "iaf"])
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "binary_star_guides.json"))
    args = ap.parse_args()

    z = sm.zoo.load("binary_star")
    data, truth = z.simulate(seed=args.seed)
    t = time.perf_counter()
    nuts = sm.fit(z.model, data, seed=args.seed, truth=truth, progress=False, **z.fit_defaults)
    nuts_seconds = time.perf_counter() - t
    ref = _flat(nuts)
    rows = [{"method": "NUTS", "seconds": nuts_seconds, **nuts.diagnostics()}]
    posts = {"NUTS": nuts}
    for guide in args.guides:
        t = time.perf_counter()
        vi = sm.fit(z.model, data, method="svi", guide=guide, num_steps=args.steps, num_draws=4000,
                    seed=args.seed, truth=truth, progress=False)
        seconds = time.perf_counter() - t
        got = _flat(vi)
        dev = max(abs(got[k].mean() - ref[k].mean()) / ref[k].std() for k in ref)
        ratio = [got[k].std() / ref[k].std() for k in ref]
        rows.append({"method": guide, "seconds": seconds, "khat": vi.meta["khat"],
                     "max_abs_dev_nuts_sd": float(dev), "sd_ratio_min": float(min(ratio)),
                     "sd_ratio_max": float(max(ratio)), "steps_run": vi.meta["steps_run"],
                     "converged": vi.meta["converged"], "final_elbo": vi.meta["final_elbo"]})
        posts[guide] = vi
        print(f"{guide}: done in {seconds:.0f} s", flush=True)

    lines = [f"binary_star, seed {args.seed}: NUTS ({nuts.meta['chains']} chains x "
             f"{nuts.meta['samples']}, max r_hat {rows[0]['max_r_hat']:.4f}) against SVI guides "
             f"(at most {args.steps} steps, 4000 draws)", "",
             "| method | k-hat | max abs(mean - NUTS mean) / NUTS sd | sd / NUTS sd (min - max) | steps "
             "| stopped | wall s |", "|---|---|---|---|---|---|---|"]
    lines.append(f"| NUTS | | 0 (reference) | 1 | | | {nuts_seconds:.0f} |")
    for r in rows[1:]:
        k = "n/a" if r["khat"] is None else f"{r['khat']:.2f}"
        lines.append(f"| {r['method']} | {k} | {r['max_abs_dev_nuts_sd']:.2f} | {r['sd_ratio_min']:.2f} - "
                     f"{r['sd_ratio_max']:.2f} | {r['steps_run']} | {r['converged']} | {r['seconds']:.0f} |")
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "seed": args.seed, "steps": args.steps,
                               "load_average": os.getloadavg(), "versions": versions()},
                              indent=2, default=float))
    out.with_suffix(".md").write_text(f"`python benchmarks/binary_star_guides.py` output:\n\n{text}\n")
    shown = {k: posts[k] for k in ("NUTS", "fullrank", "meanfield") if k in posts}
    sm.corner({k if k == "NUTS" else f"{k} VI": v for k, v in shown.items()}, truth=truth,
              path=out.with_suffix(".png"))


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
