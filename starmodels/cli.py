"""The ``starmodels`` command: list the zoo and the methods, fit a zoo model on its simulated data."""

from __future__ import annotations

import argparse
import logging
import sys


def _fit(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    import starmodels as sm
    from starmodels.atomic import check_writable_folder
    from starmodels.plots import corner, residuals
    from starmodels.startup import configure_compile_cache

    out = check_writable_folder(args.out)  # before any work: a bad --out fails at once
    if args.no_cache:
        configure_compile_cache(None)
    if args.guide is not None and args.method != "svi":
        raise ValueError(f"--guide applies to --method svi, not {args.method}")
    entry = sm.zoo.load(args.model)
    opts = dict(entry.fit_defaults) if args.method == "nuts" else {}
    if args.method == "svi":
        opts["guide"] = args.guide or "meanfield"
    for key in ("num_chains", "num_warmup", "num_draws"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    runner = sm.infer.registry.get_runner(args.method)
    runner.check_model(entry.model, runner.resolve({"seed": args.seed, **opts}))  # before any work
    data, truth = entry.simulate(seed=args.seed)
    post = sm.fit(entry.model, data, method=args.method, seed=args.seed, truth=truth,
                  progress=not args.no_progress, x64=args.x64, **opts)
    pd.set_option("display.width", 160)
    table = post.summary()
    corner(post, path=out / "corner.png")
    residuals(entry.model, data, post.mean(), path=out / "residuals.png")
    post.save(out, extra=["corner.png", "residuals.png"])  # posterior.nc, summary.csv, then the manifest
    check = post.check_truth(truth)
    m = post.meta
    if args.method == "nuts":
        print(f"\n{entry.name}: {m['num_chains']} chains ({m['chain_method']} on {m['devices_used']} "
              f"devices), {m['num_warmup']} warmup + {m['num_draws']} draws each")
    elif args.method == "svi":
        print(f"\n{entry.name}: SVI {m['guide']}, {m['num_restarts']} restarts ({m['restart_method']}), "
              f"{m['steps_run']} steps, stopped: {m['stop_reason']}")
    else:
        print(f"\n{entry.name}: exact grid posterior, {m['blocks']} block(s) x {m['num_points']} "
              f"points per dimension")
    print(f"time: {m['wall_seconds']:.1f} s wall, {m['compile_seconds']:.1f} s compiling, "
          f"{m['run_seconds']:.1f} s running; {m['gradient_evals']} gradient evaluations; compilation "
          f"cache: {m['compile_cache'] or 'off'}")
    print("diagnostics:", post.diagnostics())
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\ntruth inside the 94% interval for {int(check['inside'].sum())}/{len(check)} parameters; "
          f"max |z| = {check['z'].abs().max():.2f}")
    print(f"wrote {', '.join(f.name for f in sorted(out.iterdir()) if not f.name.startswith('.'))} "
          f"to {out}/")
    return 0


def _catalog(args) -> int:
    from starmodels.atomic import check_writable_folder
    from starmodels.tiles.api import (
        count_summary,
        load_frames,
        load_tile_model,
        to_table,
        write_catalog_folder,
    )
    from starmodels.tiles.pipeline import catalog_image

    out = check_writable_folder(args.out)  # before any work
    if (args.ra is None) != (args.dec is None):
        raise ValueError("give both --ra and --dec (degrees), or --center ROW COL")
    if (args.ra is None) == (args.center is None):
        raise ValueError("give the cutout's position: --ra and --dec (degrees), or --center ROW COL")
    tm = load_tile_model(args.model, args.encoder)
    where = {"ra": args.ra, "dec": args.dec} if args.ra is not None else {"center": tuple(args.center)}
    field, skipped = load_frames(tm, args.frames, size=args.size, **where)
    for b in skipped:
        print(f"skipping band {b}: model {args.model!r} uses {list(tm.bands)}")
    image = field.image
    res = catalog_image(tm.encoder, image, tm.prior, tm.simulator, tm.threshold)
    table = to_table(res, tm, field, args.min_p_exist)
    summary = {"model": args.model, "frames": [str(f) for f in args.frames], "bands": list(tm.bands),
               "cutout_origin": field.origin.tolist(), "size": list(field.shape), "n_stars": len(table),
               "inference_seconds": res.seconds, "counts": count_summary(res, tm, seed=args.seed),
               "seed": args.seed}
    files = write_catalog_folder(out, table, image, summary)
    print(f"{len(table)} stars (existence probability >= {args.min_p_exist}) in {field.shape[0]}x"
          f"{field.shape[1]} pixels; encoder {res.seconds:.2f} s (first call, with compilation)")
    for k, c in summary["counts"].items():
        print(f"  stars {k}: {c['mean']:.1f} ({c['prob']:.0%} interval {c['lo']:.0f}-{c['hi']:.0f})")
    print(f"wrote {', '.join(files)} and manifest.json to {out}/")
    return 0


def _train_encoder(args) -> int:
    from starmodels.atomic import check_writable_folder
    from starmodels.tiles.api import TILE_MODELS
    from starmodels.tiles.build import build_tile_model, save_tile_model
    from starmodels.tiles.field import m2_field
    from starmodels.tiles.recipe import recipe_from_args

    if args.model not in TILE_MODELS:
        raise ValueError(f"no tile model {args.model!r}; available: {list(TILE_MODELS)}")
    from pathlib import Path

    check_writable_folder(Path(args.out).parent)
    field = m2_field(data_dir=args.data)
    tm, _ = build_tile_model(field, args.model, **recipe_from_args(args))
    save_tile_model(args.out, tm, command=" ".join(["starmodels", *sys.argv[1:]]))
    sleep = tm.header["meta"]["training"]["sleep"]
    print(f"trained {sleep['steps']} steps on {sleep['images']} simulated images in "
          f"{sleep['run_seconds']:.0f} s; wrote {args.out}")
    return 0


def _list(_args) -> int:
    import starmodels as sm

    for name in sm.zoo.names():
        c = sm.zoo.card(name)
        print(f"{name:16s} {c.get('title', '')}")
    return 0


def _methods(_args) -> int:
    import starmodels as sm

    for method in sm.methods():
        print(method)
        for name, doc in sm.method_options(method).items():
            print(f"  {name:14s} {doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``starmodels`` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="starmodels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the zoo models").set_defaults(func=_list)
    sub.add_parser("methods", help="list the inference methods and their options").set_defaults(
        func=_methods)
    f = sub.add_parser("fit", help="fit a zoo model to its built-in simulated data")
    f.add_argument("model", help="zoo model name (see `starmodels list`)")
    f.add_argument("--method", default="nuts", choices=["nuts", "svi", "grid"])
    f.add_argument("--guide", default=None, help="SVI guide (map, laplace, meanfield (default), "
                   "fullrank, lowrank, iaf, bnaf)")
    f.add_argument("--out", default="out", help="output folder (default: out)")
    f.add_argument("--seed", type=int, default=0, help="seed for the data and the sampler")
    f.add_argument("--num-chains", "--chains", dest="num_chains", type=int)
    f.add_argument("--num-warmup", "--warmup", dest="num_warmup", type=int)
    f.add_argument("--num-draws", "--samples", dest="num_draws", type=int,
                   help="draws per chain (NUTS) or from the guide (SVI) or per block (grid)")
    f.add_argument("--x64", action="store_true", help="double precision")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--no-cache", action="store_true",
                   help="do not use JAX's persistent compilation cache (also: STARMODELS_COMPILE_CACHE=off)")
    f.set_defaults(func=_fit)
    c = sub.add_parser("catalog", help="catalog a crowded field (frames, one per band) with a tile model")
    c.add_argument("frames", nargs="+", help="SDSS frame files, one per band (bands from the headers)")
    c.add_argument("--ra", type=float, help="cutout centre right ascension, degrees")
    c.add_argument("--dec", type=float, help="cutout centre declination, degrees")
    c.add_argument("--center", type=float, nargs=2, metavar=("ROW", "COL"),
                   help="cutout centre, frame pixels")
    c.add_argument("--size", type=int, required=True, help="cutout side, pixels (a multiple of the tile)")
    c.add_argument("--model", default="m2_starfield")
    c.add_argument("--encoder", help="encoder file to use instead of the model's shipped one")
    c.add_argument("--min-p-exist", type=float, default=0.0,
                   help="also drop stars less probable than this (the model's own threshold applies first)")
    c.add_argument("--seed", type=int, default=0, help="seed for the count intervals")
    c.add_argument("--out", required=True, help="output folder")
    c.set_defaults(func=_catalog)
    t = sub.add_parser("train-encoder", help="train a tile model's encoder from scratch on its field")
    t.add_argument("model", help="tile model name (m2_starfield)")
    from starmodels.tiles.recipe import add_recipe_arguments

    add_recipe_arguments(t)
    t.add_argument("--data", help="SDSS data folder (default: STARMODELS_SDSS_DATA or ../shared/data/sdss)")
    t.add_argument("--out", default="encoder.eqx", help="encoder file to write")
    t.set_defaults(func=_train_encoder)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("starmodels").setLevel(logging.INFO)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as err:  # bad input: the errors name the problem
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"starmodels: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
