"""Choosing the m2_starfield training recipe on simulations: several trained encoders side by side.

Each encoder file (made by ``python -m benchmarks.m2_catalog ... --save FILE``) is judged the way the
recipe is chosen: its decision threshold re-chosen on simulated fields (seed 100, as the build does),
then the StarNet-rule F1 on independent simulated fields (seeds 1000 and 1001, 32 fields of 106x106
pixels, stars brighter than 1000 e-). The encoder with the best simulated F1 is the recipe's choice.
The real M2 score (Hubble truth) is printed beside it for the record, never used to choose.

    python -m benchmarks.m2_recipe LABEL=FILE [LABEL=FILE ...]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python benchmarks/NAME.py): the repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import starmodels  # noqa: F401  (host devices and XLA flags before JAX starts)
from benchmarks.record import write_record
from starmodels.tiles.api import TileModel, load_tile_model
from starmodels.tiles.evaluate import choose_threshold, full_catalog, pooled_scores, simulate_fields
from starmodels.tiles.field import m2_field
from starmodels.tiles.metrics import M2, m2_scoring_sets, score
from starmodels.tiles.pipeline import catalog_image

SEARCH_SEED, SCORE_SEEDS = 100, (1000, 1001)


def judge(path: str) -> dict:
    """Threshold chosen on simulations, simulated F1 on independent fields, and the real M2 F1."""
    tm = load_tile_model("m2_starfield", path)
    decision = choose_threshold(tm, M2.flux_min_e, seed=SEARCH_SEED)
    header = copy.deepcopy(tm.header)
    header["meta"]["decision"] = decision
    tm = TileModel(tm.name, tm.encoder, tm.prior, tm.simulator, header)
    tot = {"tp_est": 0, "n_est": 0, "tp_true": 0, "n_true": 0}
    for seed in SCORE_SEEDS:
        s = pooled_scores(tm, simulate_fields(tm, seed), tm.threshold, M2.flux_min_e)
        for k in tot:
            tot[k] += s[k]
    p, r = tot["tp_est"] / tot["n_est"], tot["tp_true"] / tot["n_true"]
    field = m2_field(bands=tm.prior.bands)
    res = catalog_image(tm.encoder, field.image, tm.prior, tm.simulator, tm.threshold)
    pos, flux = full_catalog(res.n_sources, res.locs, res.fluxes, tm.prior.tile_size, tm.prior.bands)
    sets = m2_scoring_sets(pos, flux[:, 0])
    real = score(sets.est, sets.truth)
    sleep = tm.header["meta"]["training"]["sleep"]
    return {"file": path, "bands": list(tm.prior.bands), "threshold": tm.threshold,
            "learning_rate": sleep.get("learning_rate", 1e-3), "steps": sleep["steps"],
            "truncated_flux": tm.encoder.flux_bounds is not None,
            "sleep_seconds": sleep["run_seconds"], "final_val_loss": sleep["val_loss"][-1],
            "sims": {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), **tot},
            "m2": {"precision": real.precision, "recall": real.recall, "f1": real.f1}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoders", nargs="+", metavar="LABEL=FILE")
    ap.add_argument("--name", default="m2_recipe")
    args = ap.parse_args(argv)
    pairs = [e.split("=", 1) for e in args.encoders]
    bad = [e for e, p in zip(args.encoders, pairs, strict=True) if len(p) != 2]
    if bad:
        raise SystemExit(f"expected LABEL=FILE, got {bad}")
    results = {label: judge(path) for label, path in pairs}
    best = max((k for k, v in results.items() if v["bands"] == ["r", "i"]) or results,
               key=lambda k: results[k]["sims"]["f1"])
    rows = ["| encoder | bands | lr | truncated flux | threshold | sims P | sims R | **sims F1** | M2 F1 | "
            "sleep s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k, v in results.items():
        s, m = v["sims"], v["m2"]
        label = f"{k} (chosen)" if k == best else k
        rows.append(f"| {label} | {'+'.join(v['bands'])} | {v['learning_rate']:g} | "
                    f"{'yes' if v['truncated_flux'] else 'no'} | {v['threshold']} | {s['precision']:.3f} | "
                    f"{s['recall']:.3f} | **{s['f1']:.3f}** | {m['f1']:.3f} | {v['sleep_seconds']:.0f} |")
    table = ("\n".join(rows) + f"\n\nChosen by the simulated F1 (r+i encoders; seeds {list(SCORE_SEEDS)}, 32 "
             "fields); the M2 column (Hubble truth) is for the record only.\n")
    write_record(args.name, {"encoders": results, "chosen": best}, table=table)
    print(table)
    return results


if __name__ == "__main__":
    main()
