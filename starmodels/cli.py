"""The ``starmodels`` command: list the zoo, fit a zoo model on its simulated data."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

MAX_CORNER = 8  # parameters shown in the CLI's corner plot (a plate of images has many)


def _fit(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    import starmodels as sm
    from starmodels.plots import corner, residuals

    entry = sm.zoo.load(args.model)
    opts = {"nuts": dict(entry.fit_defaults), "svi": {"guide": args.guide}, "grid": {}}[args.method]
    for key in ("chains", "warmup", "samples"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    data, truth = entry.simulate(seed=args.seed)
    post = sm.fit(entry.model, data, method=args.method, seed=args.seed, truth=truth,
                  progress=not args.no_progress, x64=args.x64, **opts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.width", 160)
    table = post.summary()
    table.to_csv(out / "summary.csv")
    post.to_netcdf(out / "posterior.nc")
    corner(post, params=list(post.flat_draws())[:MAX_CORNER], path=out / "corner.png")
    residuals(entry.model, data, post.mean(), path=out / "residuals.png")
    check = post.check_truth(truth)
    m = post.meta
    if args.method == "nuts":
        print(f"\n{entry.name}: {m['chains']} chains ({m['chain_method']} on {m['devices_used']} "
              f"devices), {m['warmup']} warmup + {m['samples']} draws each")
    elif args.method == "svi":
        print(f"\n{entry.name}: SVI {m['guide']}, {m['restarts']} restarts ({m['restart_method']}), "
              f"{m['steps_run']} steps")
    else:
        print(f"\n{entry.name}: exact grid posterior, {m['blocks']} block(s) x {m['points_per_dim']} "
              f"points per dimension")
    print(f"time: {m['wall_seconds']:.1f} s wall, {m['compile_seconds']:.1f} s compiling, "
          f"{m['sampling_seconds']:.1f} s sampling; {m['gradient_evals']} gradient evaluations")
    print("diagnostics:", post.diagnostics())
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    print(f"\ntruth inside the 94% interval for {int(check['inside'].sum())}/{len(check)} parameters; "
          f"max |z| = {check['z'].abs().max():.2f}")
    print(f"wrote {', '.join(f.name for f in sorted(out.iterdir()))} to {out}/")
    return 0


def _list(_args) -> int:
    import starmodels as sm

    for name in sm.zoo.names():
        c = sm.zoo.card(name)
        print(f"{name:16s} {c.get('title', '')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="starmodels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the zoo models").set_defaults(func=_list)
    f = sub.add_parser("fit", help="fit a zoo model to its built-in simulated data")
    f.add_argument("model", help="zoo model name (see `starmodels list`)")
    f.add_argument("--method", default="nuts", choices=["nuts", "svi", "grid"])
    f.add_argument("--guide", default="meanfield", help="SVI guide (map, laplace, meanfield, "
                   "fullrank, lowrank, iaf, bnaf)")
    f.add_argument("--out", default="out", help="output folder (default: out)")
    f.add_argument("--seed", type=int, default=0, help="seed for the data and the sampler")
    f.add_argument("--chains", type=int)
    f.add_argument("--warmup", type=int)
    f.add_argument("--samples", type=int, help="draws per chain (NUTS) or from the guide (SVI)")
    f.add_argument("--x64", action="store_true", help="double precision")
    f.add_argument("--no-progress", action="store_true")
    f.set_defaults(func=_fit)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("starmodels").setLevel(logging.INFO)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
