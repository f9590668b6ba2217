"""Speed of the crowded-field simulator: simulated 64x64 two-band images per second at M2 density.

The simulator of ``m2_starfield`` (set up from the real field: PSF profiles, band offsets, sky,
calibrated unresolved light) draws fresh tile catalogs from the prior, renders both bands, adds the
unresolved light, sky and noise, and computes the background estimate the encoder is given, all in one
compiled call. Reported per batch size: compile time, run time per batch (best of ``--repeats``) and
images per second, with and without the unresolved light, and the time split between rendering and
the rest (render-only program).

    python -m benchmarks.tile_simulator [--batches 16 64 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp

import starmodels  # noqa: F401
from benchmarks.record import write_record
from starmodels.tiles.build import setup_from_field
from starmodels.tiles.field import m2_field
from starmodels.tiles.render import render_tiles
from starmodels.tiles.simulate import simulate_batch


def _time(fn, key, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(key))
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for i in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(jax.random.fold_in(key, i + 1)))
        best = min(best, time.perf_counter() - t)
    return compile_s, best


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tiles", type=int, default=32, help="tiles per side (32 = 64x64 pixels)")
    args = ap.parse_args(argv)
    prior, cfg, _, measured = setup_from_field(m2_field())
    nt = (args.tiles, args.tiles)
    rows, figures = [], {"tiles": args.tiles, "prior": prior.to_dict(), "runs": []}
    for batch in args.batches:
        for faint in (True, False):
            c = cfg if faint else dataclasses.replace(cfg, faint_light_hi=0.0, faint_light_lo=0.0)
            sim = jax.jit(lambda k, c=c, b=batch: simulate_batch(k, prior, c, b, nt))
            comp, run = _time(sim, jax.random.PRNGKey(0), args.repeats)
            r = {"batch": batch, "unresolved_light": faint, "compile_seconds": comp, "seconds_per_batch": run,
                 "images_per_second": batch / run}
            figures["runs"].append(r)
            rows.append(f"| {batch} | {'yes' if faint else 'no'} | {comp:.1f} | {run * 1e3:.0f} | "
                        f"{batch / run:.0f} |")
        bt = cfg.border_tiles

        def render_only(k, b=batch, bt=bt):
            n, locs, fl = prior.sample(k, (b,), (nt[0] + 2 * bt, nt[1] + 2 * bt))
            on = jnp.arange(prior.max_sources) < n[..., None]
            return render_tiles(locs, fl, on, jnp.asarray(cfg.psf), prior.tile_size,
                                jnp.asarray(cfg.band_offsets), border_tiles=bt, oversample=cfg.oversample)

        _, run = _time(jax.jit(render_only), jax.random.PRNGKey(0), args.repeats)
        figures["runs"].append({"batch": batch, "render_only_seconds": run})
        rows.append(f"| {batch} | render only | | {run * 1e3:.0f} | {batch / run:.0f} |")
    best = max(r["images_per_second"] for r in figures["runs"] if "images_per_second" in r
               and r["unresolved_light"])
    head = ("| batch | unresolved light | compile (s) | run per batch (ms) | images/s |\n"
            "|---|---|---|---|---|\n")
    table = head + "\n".join(rows) + "\n"
    targets = {"speed": {"target": ">= 500 crowded 64x64 two-band images/s", "value": f"{best:.0f}",
                         "met": best >= 500}}
    write_record("tile_simulator", figures, targets=targets, table=table)
    print(table)
    return figures


if __name__ == "__main__":
    main()
