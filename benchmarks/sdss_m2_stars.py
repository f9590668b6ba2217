"""Real-data check: posterior fluxes and positions of bright, isolated M2 stars against Hubble.

On the r-band SDSS cutout ``frame-r[627:733, 307:413]`` (run 2583, camcol 2, field 136) that the
Hubble truth file covers: read the frame in electrons (sky added back, gain and dark variance from
the psField), take the psField PSF at the cutout centre, detect stars (matched filter, 5 sigma), pick
the brightest well-isolated ones, and fit each in a 21 x 21 stamp with every detected star of the
stamp (peaks inside it) and a sky level, by NUTS. Each fitted star is matched to the nearest
Hubble star within ``--match`` pixels and ``--dmag`` magnitudes, with the Hubble positions converted by
the truth file's convention (``starmodels.tiles.metrics.M2``: ``row = 100 * true_locs[:, 0] + 2.5`` in
cutout pixels, see ``/work/shared/data/sdss/README.md``); the script reports position offsets
(pixels) and flux ratios (SDSS / Hubble) with their scatter, and writes the catalog (ECSV), the
stamps' data / model / residual figure and a JSON + Markdown record to ``benchmarks/results/``.

    python benchmarks/sdss_m2_stars.py [--stars 10] [--data /work/shared/data/sdss]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import vstack  # noqa: E402

import starmodels as sm  # noqa: E402
from starmodels.infer.fit import versions  # noqa: E402
from starmodels.io import KLPsf, read_sdss_frame  # noqa: E402
from starmodels.posterior_catalog import star_catalog  # noqa: E402
from starmodels.starfield import detect_stars, star_field_model  # noqa: E402
from starmodels.tiles.metrics import M2, load_m2_truth  # noqa: E402

HERE = Path(__file__).parent
ROWS = (M2.frame_origin[0], M2.frame_origin[0] + M2.cutout_size)  # (627, 733): the truth file's cutout
COLS = (M2.frame_origin[1], M2.frame_origin[1] + M2.cutout_size)  # (307, 413)
STAMP, MARGIN = 21, 0.5


def isolated_targets(stars, n, shape, flux_fraction=0.2, radius=4.0, edge=STAMP // 2):
    """Brightest detections with no detection brighter than ``flux_fraction`` of them within ``radius``."""
    rows, cols, flux = (np.asarray(stars[k], float) for k in ("row", "col", "flux"))
    keep = []
    for i in range(len(stars)):
        d = np.hypot(rows - rows[i], cols - cols[i])
        crowded = np.any((d > 0) & (d < radius) & (flux > flux_fraction * flux[i]))
        inside = edge <= rows[i] < shape[0] - edge and edge <= cols[i] < shape[1] - edge
        if inside and not crowded:
            keep.append(i)
        if len(keep) == n:
            break
    return keep


def hubble_pixels(truth_file, band=0):
    """Hubble stars as 0-based cutout pixels (row, col; centres at integers) and fluxes (electrons).

    The convention is the data README's, kept in :data:`starmodels.tiles.metrics.M2`
    (``row = 100 * true_locs[:, 0] + 2.5``); ``true_locs`` are not fractions of the 106-pixel cutout.
    """
    t = load_m2_truth(truth_file, band=band)
    return t.pos[:, 0], t.pos[:, 1], t.flux_e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("STARMODELS_SDSS_DATA", "/work/shared/data/sdss"))
    ap.add_argument("--stars", type=int, default=10)
    ap.add_argument("--match", type=float, default=2.0, help="match radius to Hubble stars (pixels)")
    ap.add_argument("--dmag", type=float, default=1.0, help="largest magnitude difference of a match")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "sdss_m2_stars.json"))
    args = ap.parse_args()
    root = Path(args.data)
    field = root / "2583" / "2" / "136"

    frame = read_sdss_frame(field / "frame-r-002583-2-0136.fits.bz2")
    cut = frame.cutout(rows=ROWS, cols=COLS)
    psf = KLPsf.from_psfield(field / "psField-002583-2-0136.fits", "r").at_center_of(cut)
    stars = detect_stars(cut, psf, threshold=5.0)
    targets = isolated_targets(stars, args.stars, cut.shape)
    h_row, h_col, h_flux = hubble_pixels(root / "truth" / "true_hubble_m2.npz")

    rows, cats, panels = [], [], []
    for k, i in enumerate(targets):
        t0 = time.perf_counter()
        stamp = cut.cutout(center=(stars["row"][i], stars["col"][i]), size=STAMP)
        oy, ox = (a - b for a, b in zip(stamp.meta["origin"], cut.meta["origin"], strict=True))
        local = stars.copy()
        local["row"] -= oy
        local["col"] -= ox
        near = ((local["row"] > -MARGIN) & (local["row"] < STAMP + MARGIN - 1)
                & (local["col"] > -MARGIN) & (local["col"] < STAMP + MARGIN - 1))
        local = local[near]
        target = int(np.flatnonzero(np.flatnonzero(near) == i)[0])  # the target's row in ``local``
        model = star_field_model(stamp, psf, local, name=f"m2_star{k}")
        post = sm.fit(model, stamp.data, num_chains=2, num_warmup=400, num_draws=600, seed=args.seed + k,
                      progress=False)
        cat = star_catalog(post, stamp)
        star = cat[target]
        r, c = star["row"] + oy, star["col"] + ox  # cutout pixels
        d = np.hypot(h_row - r, h_col - c)
        dmag = np.abs(2.5 * np.log10(star["flux_e"] / h_flux))
        cand = np.flatnonzero((d < args.match) & (dmag < args.dmag))
        diag = post.diagnostics()
        row = {"star": k, "row": float(r), "col": float(c), "flux_e": float(star["flux_e"]),
               "flux_e_sd": float(star["flux_e_sd"]), "mag": float(star["mag"]),
               "row_sd": float(star["row_sd"]), "col_sd": float(star["col_sd"]),
               "stars_in_stamp": len(local), "sky_e": float(post.mean()["detector.background"]),
               "max_r_hat": diag["max_r_hat"], "divergences": diag["divergences"],
               "seconds": time.perf_counter() - t0}
        if cand.size:
            j = cand[np.argmin(d[cand])]
            row.update(hubble_row=float(h_row[j]), hubble_col=float(h_col[j]),
                       hubble_flux_e=float(h_flux[j]), d_row=float(r - h_row[j]),
                       d_col=float(c - h_col[j]), flux_ratio=float(star["flux_e"] / h_flux[j]),
                       hubble_within_match=int(cand.size))
        rows.append(row)
        cat["stamp"] = k
        cats.append(cat)
        panels.append((stamp, model, post))
        print(f"star {k}: {len(local)} stars in stamp, {row['seconds']:.0f} s, "
              f"ratio {row.get('flux_ratio', float('nan')):.3f}", flush=True)

    matched = [r for r in rows if "flux_ratio" in r]
    dr = np.array([r["d_row"] for r in matched])
    dc = np.array([r["d_col"] for r in matched])
    ratio = np.array([r["flux_ratio"] for r in matched])
    dist = np.hypot(dr, dc)
    mad = lambda x: float(1.4826 * np.median(np.abs(x - np.median(x))))  # noqa: E731
    summary = {
        "fitted": len(rows), "matched": len(matched), "median_d_row": float(np.median(dr)),
        "median_d_col": float(np.median(dc)), "median_offset": float(np.median(dist)),
        "mad_d_row": mad(dr), "mad_d_col": mad(dc), "median_flux_ratio": float(np.median(ratio)),
        "mad_flux_ratio": mad(ratio), "median_pos_sd_pix": float(np.median(
            [np.hypot(r["row_sd"], r["col_sd"]) for r in matched])),
    }
    lines = [f"SDSS r, M2 cutout frame-r[{ROWS[0]}:{ROWS[1]}, {COLS[0]}:{COLS[1]}]: {len(stars)} detections "
             f"(5 sigma); {len(rows)} bright isolated stars fitted by NUTS in {STAMP}x{STAMP} stamps; "
             f"{len(matched)} matched to Hubble within {args.match} px and {args.dmag} mag", "",
             "| star | SDSS flux (e-) | Hubble flux (e-) | SDSS/Hubble | d_row | d_col | posterior pos sd "
             "| stars in stamp | max r_hat |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "flux_ratio" in r:
            lines.append(f"| {r['star']} | {r['flux_e']:.4g} +- {r['flux_e_sd']:.2g} "
                         f"| {r['hubble_flux_e']:.4g} | {r['flux_ratio']:.3f} | {r['d_row']:+.2f} "
                         f"| {r['d_col']:+.2f} | "
                         f"{np.hypot(r['row_sd'], r['col_sd']):.3f} | {r['stars_in_stamp']} | "
                         f"{r['max_r_hat']:.3f} |")
        else:
            lines.append(f"| {r['star']} | {r['flux_e']:.4g} | none within {args.match} px and "
                         f"{args.dmag} mag | | | | | {r['stars_in_stamp']} | {r['max_r_hat']:.3f} |")
    s = summary
    lines += ["", f"median offset (row, col) = ({s['median_d_row']:+.2f}, {s['median_d_col']:+.2f}) px, "
              f"scatter (1.48 MAD) ({s['mad_d_row']:.2f}, {s['mad_d_col']:.2f}) px, median distance "
              f"{s['median_offset']:.2f} px (posterior sd {s['median_pos_sd_pix']:.3f} px); median flux "
              f"ratio SDSS/Hubble {s['median_flux_ratio']:.3f}, scatter {s['mad_flux_ratio']:.3f}"]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "summary": summary, "detections": len(stars),
                               "seed": args.seed, "match_radius": args.match, "match_dmag": args.dmag,
                               "load_average": os.getloadavg(), "versions": versions()},
                              indent=2, default=float))
    out.with_suffix(".md").write_text(f"`python benchmarks/sdss_m2_stars.py` output:\n\n{text}\n")
    vstack(cats).write(out.with_name("sdss_m2_catalog.ecsv"), overwrite=True)
    _figure(panels, out.with_suffix(".png"))


def _figure(panels, path):
    """Data, model and normalised residual of every stamp, one row each."""
    import jax.numpy as jnp

    fig, axes = plt.subplots(len(panels), 3, figsize=(7, 2.3 * len(panels)), squeeze=False)
    for (stamp, model, post), ax in zip(panels, axes, strict=True):
        params = post.mean()
        mu = np.asarray(model.render({k: jnp.asarray(v) for k, v in params.items()}))
        sd = np.sqrt(mu + model.noise.fixed()["read_sigma"] ** 2)
        for a, img, title, kw in ((ax[0], stamp.data, "data (e-)", {}), (ax[1], mu, "model", {}),
                                  (ax[2], (stamp.data - mu) / sd, "(data - model) / sd",
                                   {"cmap": "RdBu_r", "vmin": -5, "vmax": 5})):
            im = a.imshow(img, origin="lower", **({"cmap": "inferno"} | kw))
            a.set_title(f"{model.name}: {title}", fontsize=7)
            a.set_xticks([])
            a.set_yticks([])
            fig.colorbar(im, ax=a, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
