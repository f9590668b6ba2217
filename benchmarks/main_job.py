"""The README's main job, timed as a new user meets it: cold (empty compilation cache) and warm.

Runs ``starmodels fit binary_star --method nuts --out DIR`` in fresh processes with a fresh
compilation cache folder: the first run compiles everything (cold), the next ``--warm`` runs find it
in the cache. Reports wall time per run, the compile / MAP / warmup / sampling split from the
result's metadata, and the checks the README promises (13/13 truths in the 94% HDI, max r_hat,
min ess_bulk), against the targets of issue 9 (cold <= 90 s, warm <= 45 s).

    python benchmarks/main_job.py [--warm 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.record import write_record
from starmodels.results import Posterior

TARGET_COLD, TARGET_WARM = 90.0, 45.0


def one_run(out: Path, cache: Path, seed: int) -> dict:
    """One CLI run in a fresh process; wall time and the result's figures."""
    env = {**os.environ, "STARMODELS_COMPILE_CACHE": str(cache)}
    exe = Path(sys.executable).with_name("starmodels")
    cmd = [str(exe), "fit", "binary_star", "--method", "nuts", "--out", str(out), "--seed", str(seed),
           "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    post = Posterior.load(out)
    m = post.meta
    table = post.summary(warn=False)
    hdi = post.check_truth(m["truth"], prob=0.94)
    return {"wall_seconds": wall, "fit_wall_seconds": m["wall_seconds"],
            "compile_seconds": m["compile_seconds"], "map_seconds": m["map"]["run_seconds"],
            "map_compile_seconds": m["map"]["compile_seconds"], "init_seconds": m["init_seconds"],
            "warmup_seconds": m["warmup_seconds"], "sampling_seconds": m["sampling_seconds"],
            "outside_fit_seconds": wall - m["wall_seconds"],
            "truths_in_hdi": int(hdi["inside"].sum()), "parameters": len(hdi),
            "max_r_hat": float(table["r_hat"].max()), "min_ess_bulk": float(table["ess_bulk"].min()),
            "divergences": int(m["divergences"]), "gradient_evals": int(m["gradient_evals"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=2, help="warm runs after the cold one")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="main_job_"))
    cache = work / "jax-cache"
    runs = []
    try:
        for i in range(1 + args.warm):
            runs.append(one_run(work / f"out{i}", cache, args.seed))
            runs[-1]["cache_entries"] = len(list(cache.glob("*-cache")))
            print(("cold" if i == 0 else "warm"), {k: round(v, 2) for k, v in runs[-1].items()}, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cold, warm = runs[0], runs[1:]
    warm_wall = float(np.median([r["wall_seconds"] for r in warm])) if warm else float("nan")
    cols = ["wall_seconds", "compile_seconds", "map_seconds", "warmup_seconds", "sampling_seconds",
            "outside_fit_seconds", "truths_in_hdi", "max_r_hat", "min_ess_bulk"]
    lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for i, r in enumerate(runs):
        lines.append(f"| {'cold' if i == 0 else f'warm {i}'} | " + " | ".join(
            f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    ok_fit = all(r["truths_in_hdi"] == r["parameters"] and r["max_r_hat"] <= 1.01
                 and r["min_ess_bulk"] >= 1000 for r in runs)
    targets = {
        "cold": {"target": f"cold wall <= {TARGET_COLD:.0f} s", "value": f"{cold['wall_seconds']:.1f} s",
                 "met": cold["wall_seconds"] <= TARGET_COLD},
        "warm": {"target": f"warm wall <= {TARGET_WARM:.0f} s (median)", "value": f"{warm_wall:.1f} s",
                 "met": warm_wall <= TARGET_WARM},
        "fit": {"target": "13/13 truths in 94% HDI, max r_hat <= 1.01, min ess_bulk >= 1000 (every run)",
                "value": "; ".join(f"{r['truths_in_hdi']}/13, {r['max_r_hat']:.4f}, {r['min_ess_bulk']:.0f}"
                                   for r in runs), "met": ok_fit},
    }
    write_record("main_job", {"runs": runs, "warm_median_wall_seconds": warm_wall}, targets=targets,
                 table="\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
