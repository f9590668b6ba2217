"""Crowded-field catalog of the real M2 cutout against the Hubble truth (the StarNet benchmark).

The r (and i) cutout of SDSS run 2583 camcol 2 field 136 at the M2 box (frame rows 627:733, cols
307:413; other bands WCS-matched) is read from the frames; the tile model is built for it
(:func:`starmodels.tiles.build.build_tile_model`: simulator set up from the field's own data products,
encoder trained on fresh simulations, optional wake phase, decision threshold chosen on simulations)
or loaded (``--encoder``); its catalog is scored by the published protocol
(:func:`starmodels.tiles.metrics.m2_scoring_sets`: Hubble stars with 8 < row, col < 98, estimates kept
by the same rule and at >= 1000 electrons in r; StarNet matching rule, Hungarian beside it). The truth
is used for scoring only. Also: the same score on fields simulated from the model's prior, and the
coverage of its 90% star-count intervals there.

    python -m benchmarks.m2_catalog [--encoder FILE | --steps N --batch B --wake-steps N --lr LR ...]

Without ``--encoder`` it trains with the shipped recipe (``starmodels.tiles.recipe.RECIPE``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python benchmarks/NAME.py): the repo root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import starmodels  # noqa: F401  (host devices and XLA flags before JAX starts)
from benchmarks.record import write_record
from starmodels.tiles.api import load_tile_model
from starmodels.tiles.build import build_tile_model, save_tile_model
from starmodels.tiles.evaluate import count_coverage, full_catalog, pooled_scores, simulate_fields
from starmodels.tiles.field import m2_field
from starmodels.tiles.metrics import M2, m2_scoring_sets, score
from starmodels.tiles.pipeline import catalog_image
from starmodels.tiles.recipe import add_recipe_arguments, recipe_from_args

PUBLISHED = {"StarNet (wake-sleep)": (0.506, 0.601, 0.549), "StarNet (sleep only)": (0.510, 0.469, 0.489),
             "PCAT": (0.559, 0.405, 0.469), "DAOPHOT": (0.200, 0.631, 0.303)}


def evaluate(tm, field, seed: int) -> dict:
    """Score a tile model's catalog of the real field (both rules) and of simulated fields."""
    catalog_image(tm.encoder, field.image, tm.prior, tm.simulator, tm.threshold)          # compile
    result = catalog_image(tm.encoder, field.image, tm.prior, tm.simulator, tm.threshold)
    pos, flux = full_catalog(result.n_sources, result.locs, result.fluxes, tm.prior.tile_size, tm.prior.bands)
    sets = m2_scoring_sets(pos, flux[:, 0])
    scores = {rule: score(sets.est, sets.truth, rule=rule) for rule in ("starnet", "hungarian")}
    sims = simulate_fields(tm, seed + 7)
    return {"scores": scores, "result": result, "n_est": int(len(sets.est[0])),
            "n_true": int(len(sets.truth[0])),
            "simulated": pooled_scores(tm, sims, tm.threshold, M2.flux_min_e),
            "coverage": count_coverage(tm, sims, seed=seed)}


def _row(label, s) -> str:
    return f"| {label} | {s.recall:.3f} | {s.precision:.3f} | {s.f1:.3f} |"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", help="load this encoder file (with its prior and simulator), no training")
    ap.add_argument("--save", help="write the final encoder here")
    add_recipe_arguments(ap)
    ap.add_argument("--bands", nargs="+", default=["r", "i"])
    ap.add_argument("--tile-channels", type=int, default=64, help="channels of the encoder's tile layers")
    ap.add_argument("--tile-layers", type=int, default=4, help="residual layers at tile resolution")
    ap.add_argument("--name", default="m2_catalog")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    field = m2_field(bands=tuple(args.bands))
    before_tm = None
    if args.encoder:
        tm = load_tile_model("m2_starfield", args.encoder)
    else:
        tm, before_tm = build_tile_model(field, **recipe_from_args(args), flux_limit=M2.flux_min_e,
                                         encoder_kwargs={"tile_channels": args.tile_channels,
                                                         "n_tile": args.tile_layers})
    build_s = time.perf_counter() - t0
    if args.save:
        command = " ".join(["python -m benchmarks.m2_catalog", *(argv if argv is not None else sys.argv[1:])])
        save_tile_model(args.save, tm, command)
    meta = tm.header["meta"]
    final = evaluate(tm, field, args.seed)
    before = evaluate(before_tm, field, args.seed) if before_tm is not None else None

    star, hung = final["scores"]["starnet"], final["scores"]["hungarian"]
    rows = ["| method | recall | precision | F1 |", "|---|---|---|---|",
            _row(f"**starmodels ({'+'.join(field.bands)}), StarNet rule**", star),
            _row("starmodels, Hungarian (one-to-one)", hung)]
    if before is not None:
        rows.append(_row("starmodels before the wake phase, StarNet rule", before["scores"]["starnet"]))
    sim = final["simulated"]
    rows.append(f"| starmodels on simulated fields (prior), StarNet rule | {sim['recall']:.3f} | "
                f"{sim['precision']:.3f} | {sim['f1']:.3f} |")
    rows += [f"| {k} (published) | {r:.3f} | {p:.3f} | {f:.3f} |" for k, (r, p, f) in PUBLISHED.items()]
    cov = "\n".join(f"| {k} | {c['coverage']:.2f} | {c['mean_width']:.1f} | {c['mean_error']:+.1f} |"
                    for k, c in final["coverage"].items())
    per_mag = "\n".join(star.table().pformat(max_width=-1, max_lines=-1))
    table = ("\n".join(rows) + f"\n\nDecision threshold (existence probability, chosen on simulations): "
             f"{tm.threshold}\n\nPer magnitude (StarNet rule):\n\n" + per_mag
             + "\n\n90% intervals of star counts in the scored region, fields simulated from the prior:\n\n"
             + "| stars | coverage | mean width | mean error |\n|---|---|---|---|\n" + cov + "\n")
    seconds = final["result"].seconds
    figures = {"bands": list(field.bands), "starnet": star.to_dict(), "hungarian": hung.to_dict(),
               "before_wake": before["scores"]["starnet"].to_dict() if before is not None else None,
               "n_detections_scored": final["n_est"], "n_truth_scored": final["n_true"],
               "simulated_fields": sim, "count_coverage": final["coverage"], "decision": meta.get("decision"),
               "training": meta.get("training"), "build_seconds": build_s, "inference_seconds": seconds,
               "measured_from_field": meta.get("measured"), "prior": tm.prior.to_dict(),
               "encoder": dict(tm.encoder.hyper), "encoder_file": args.encoder or args.save}
    targets = {"f1": {"target": "M2 F1 (StarNet rule) >= 0.57", "value": f"{star.f1:.3f}",
                      "met": star.f1 >= 0.57},
               "inference": {"target": "inference on the 100x100 image < 1 s", "value": f"{seconds:.3f} s",
                             "met": seconds < 1.0}}
    write_record(args.name, figures, targets=targets, table=table)
    print(table)
    return figures


if __name__ == "__main__":
    main()
