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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("starmodels").setLevel(logging.INFO)
    try:
        return args.func(args)
    except (ValueError, KeyError) as err:  # bad input: the library's errors name the problem
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"starmodels: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
