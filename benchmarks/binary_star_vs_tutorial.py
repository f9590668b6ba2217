"""Benchmark: starmodels' ``binary_star`` against the dLux tutorial's bare NumPyro program.

The public dLux tutorial "NumPyro and Hamiltonian Monte Carlo" fits a binary
star plus Zernike aberrations with a hand-written NumPyro program: uniform
priors in the tutorial's units, ``telescope.set(paths, values).model()`` and a
Poisson plate likelihood, sampled by NUTS with default settings (diagonal mass
matrix, ``init_to_uniform``). This script runs that program style (a) and
starmodels' zoo model with its noise switched to Poisson (b) on the same
simulated integer counts, both with 2 chains in parallel on 2 host devices
and the same number of post-warmup draws, and measures for each:

* wall seconds, with JAX compile time separated from warmup and sampling;
* minimum bulk ESS over the same 13 physical parameters (ArviZ), per sampling
  second, per second of the whole run (MAP init + warmup + sampling) and per
  gradient evaluation (sampling phase and in total);
* max r_hat, divergences and how many true values lie in the 94% HDI;
* the cost of one gradient of each program's NumPyro potential energy against
  a bare ``jax.jit(jax.grad(f))`` of the same log density written directly on
  ``model.render`` (median of many blocked calls).

It also checks that the bare dLux telescope renders the same image as
starmodels at the truth. Results go to JSON and Markdown next to ``--out``.

    python benchmarks/binary_star_vs_tutorial.py            # full run, ~10-30 min on 2 cores
    python benchmarks/binary_star_vs_tutorial.py --quick    # smoke check, ~1 min
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import starmodels as sm  # first: sets the JAX host device count before JAX starts

# isort: split
import arviz as az
import dLux as dl
import dLux.utils as dlu
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS
from numpyro.infer.util import initialize_model

from starmodels.diagnostics import flat_truth
from starmodels.infer.timing import stopwatch
from starmodels.noise import Poisson

CHAINS = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "binary_star_vs_tutorial.json"
PACKAGES = ("jax", "jaxlib", "numpyro", "dLux", "arviz", "equinox", "starmodels")
APERTURE_OVERSAMPLE = 5  # as starmodels.optics: sub-pixels per pupil pixel on the aperture edge

# Tutorial parameter -> (starmodels name, factor to physical units of starmodels)
TUTORIAL_NAMES = {
    "x": ("source.x", 1.0), "y": ("source.y", 1.0), "r": ("source.separation", 1.0),
    "theta": ("source.position_angle", 1.0), "log_flux": ("source.log_flux", 1.0),
    "contrast": ("source.contrast", 1.0), "coeffs": ("optics.zernike", 1e9),  # metres -> nm
}
PATHS = ["source.position", "source.separation", "source.position_angle", "source.mean_flux",
         "source.contrast", "optics.aperture.coefficients"]


def library_state() -> dict:
    """Git commit of the checkout and a hash of starmodels' and the zoo's files as they are now."""
    root = Path(sm.__file__).resolve().parent.parent
    files = sorted([*root.joinpath("starmodels").rglob("*.py"), *root.joinpath("models").rglob("*.toml")])
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    git = lambda *a: subprocess.run(["git", "-C", str(root), *a], capture_output=True, text=True).stdout
    return {"git_commit": git("rev-parse", "HEAD").strip(),
            "dirty": bool(git("status", "--porcelain", "--", "starmodels", "models").strip()),
            "source_sha256_16": digest}


# -- (a) the tutorial's program style ---------------------------------------------------------
def tutorial_telescope(card: dict) -> dl.Telescope:
    """The card's telescope built directly in dLux, as the tutorial does."""
    o, d = card["optics"], card["detector"]
    diameter, npix = o["diameter_m"], o["wf_npixels"]
    fine = dlu.pixel_coords(APERTURE_OVERSAMPLE * npix, diameter)
    spider = dlu.spider(fine, o["spider_width_m"], jnp.asarray(o["spider_angles_deg"], float))
    transmission = dlu.combine(jnp.stack([dlu.circle(fine, diameter / 2), spider]),
                               APERTURE_OVERSAMPLE)
    basis = dlu.zernike_basis(o["noll"], dlu.pixel_coords(npix, diameter), diameter)
    layer = dl.layers.BasisOptic(basis, transmission, jnp.zeros(len(o["noll"])), normalise=True)
    optics = dl.AngularOpticalSystem(npix, diameter, [("aperture", layer)], d["npixels"],
                                     d["pixel_scale_arcsec"], d["oversample"])
    source = dl.BinarySource(wavelengths=1e-9 * np.asarray(o["wavelengths_nm"]))
    detector = dl.LayeredDetector([("downsample", dl.layers.Downsample(d["oversample"]))])
    return dl.Telescope(optics, source, detector)


def tutorial_values(x, y, r, theta, log_flux, contrast, coeffs):
    """Tutorial units (arcsec, deg, log10 total photons, metres) -> dLux leaves for PATHS."""
    return [dlu.arcsec2rad(jnp.stack([x, y])), dlu.arcsec2rad(r), dlu.deg2rad(theta),
            10.0**log_flux / 2, contrast, coeffs]  # BinarySource wants the mean of the 2 fluxes


def to_tutorial_units(params: dict) -> dict:
    """starmodels' physical parameters -> the tutorial program's sample sites."""
    return {k: params[name] / factor for k, (name, factor) in TUTORIAL_NAMES.items()}


def tutorial_program(data, telescope):
    """The tutorial's NumPyro program (log_flux prior widened to contain the truth)."""
    x = numpyro.sample("x", dist.Uniform(-0.1, 0.1))
    y = numpyro.sample("y", dist.Uniform(-0.1, 0.1))
    r = numpyro.sample("r", dist.Uniform(0.01, 0.5))
    theta = numpyro.sample("theta", dist.Uniform(80.0, 100.0))
    log_flux = numpyro.sample("log_flux", dist.Uniform(3.0, 6.0))
    contrast = numpyro.sample("contrast", dist.Uniform(1.0, 5.0))
    with numpyro.plate("noll", 7):
        coeffs = numpyro.sample("coeffs", dist.Uniform(-1e-7, 1e-7))
    values = tutorial_values(x, y, r, theta, log_flux, contrast, coeffs)
    with numpyro.plate("data", data.size):
        rate = telescope.set(PATHS, values).model().flatten()
        numpyro.sample("psf", dist.Poisson(rate), obs=data.flatten())


def run_tutorial(telescope, data, labels, warmup: int, samples: int, seed: int) -> dict:
    """NUTS with numpyro's defaults on the tutorial program, 2 chains in parallel, timed."""
    assert jax.local_device_count() >= CHAINS, f"need {CHAINS} JAX devices for parallel chains"
    mcmc = MCMC(NUTS(tutorial_program), num_warmup=warmup, num_samples=samples, num_chains=CHAINS,
                chain_method="parallel", progress_bar=False)
    assert mcmc.chain_method == "parallel", mcmc.chain_method
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    with stopwatch() as t_warm:
        mcmc.warmup(key, data, telescope, extra_fields=("num_steps",), collect_warmup=True)
        warm_steps = np.asarray(jax.block_until_ready(
            mcmc.get_extra_fields(group_by_chain=True)["num_steps"])).sum(axis=1)
    with stopwatch() as t_samp:
        mcmc.run(mcmc.post_warmup_state.rng_key, data, telescope,
                 extra_fields=("num_steps", "diverging"))
        raw = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    extra = mcmc.get_extra_fields(group_by_chain=True)
    flat = {}
    for name, (sm_name, factor) in TUTORIAL_NAMES.items():
        arr = np.asarray(raw[name], float) * factor
        if arr.ndim == 2:
            flat[sm_name] = arr
        else:
            flat.update({f"{sm_name}[{lab}]": arr[..., i] for i, lab in enumerate(labels[sm_name])})
    per_chain = np.asarray(extra["num_steps"]).sum(axis=1)
    return {
        "flat": flat, "compile_seconds": t_warm.compile + t_samp.compile, "init_seconds": 0.0,
        "warmup_seconds": t_warm.run, "sampling_seconds": t_samp.run,
        "wall_seconds": t_warm.wall + t_samp.wall, "gradient_evals_sampling": int(per_chain.sum()),
        "gradient_evals_sampling_per_chain": per_chain.tolist(),
        "gradient_evals_warmup_per_chain": warm_steps.tolist(),
        "gradient_evals": int(warm_steps.sum() + per_chain.sum()),
        "divergences": int(np.sum(extra["diverging"])), "warmup": warmup,
        "chain_method": mcmc.chain_method,
        "devices_used": len(jax.tree_util.tree_leaves(mcmc.last_state)[0].sharding.device_set),
    }


# -- (b) starmodels ---------------------------------------------------------------------------
def run_starmodels(model, data, fit_defaults: dict, warmup: int, samples: int, seed: int) -> dict:
    """``sm.fit`` with the card's NUTS settings, 2 chains in parallel."""
    post = sm.fit(model, data, method="nuts", num_chains=CHAINS, num_warmup=warmup, num_draws=samples,
                  seed=seed, progress=False, chain_method="parallel",
                  dense_mass=fit_defaults.get("dense_mass", True), init=fit_defaults.get("init", "map"))
    m = post.meta
    keys = ("compile_seconds", "init_seconds", "warmup_seconds", "sampling_seconds", "wall_seconds",
            "gradient_evals", "gradient_evals_sampling", "divergences", "warmup", "chain_method",
            "devices_used", "dense_mass", "init")
    per_chain = post.idata.sample_stats["n_steps"].values.sum(axis=1)
    return {"flat": post.flat_draws(), "gradient_evals_sampling_per_chain": per_chain.tolist(),
            **{k: m[k] for k in keys}, **{k: v for k, v in m.items() if k.startswith("map_")}}


# -- analysis ---------------------------------------------------------------------------------
def analyse(run: dict, truth: dict[str, float], samples: int, loglik: list[float]) -> dict:
    """Add ESS, r_hat and truth coverage (94% HDI) on the 13 physical parameters."""
    flat = run.pop("flat")
    table = az.summary(az.from_dict(posterior=flat), hdi_prob=0.94, kind="all",
                       round_to="none")
    inside = {k: bool(table.loc[k, "hdi_3%"] <= t <= table.loc[k, "hdi_97%"]) for k, t in truth.items()}
    min_ess = float(table["ess_bulk"].min())
    run_seconds = run["init_seconds"] + run["warmup_seconds"] + run["sampling_seconds"]
    run.update(
        samples=samples, n_params=len(table), min_ess_bulk=min_ess,
        min_ess_param=str(table["ess_bulk"].idxmin()), max_r_hat=float(table["r_hat"].max()),
        run_seconds=run_seconds, ess_per_sampling_second=min_ess / run["sampling_seconds"],
        ess_per_run_second=min_ess / run_seconds,
        ess_per_kgrad_sampling=1e3 * min_ess / run["gradient_evals_sampling"],
        ess_per_kgrad_total=1e3 * min_ess / run["gradient_evals"],
        # chains run concurrently, so the busiest chain sets the sampling time
        ms_per_grad_in_sampler=1e3 * run["sampling_seconds"] / max(run["gradient_evals_sampling_per_chain"]),
        truth_inside_94=int(sum(inside.values())), loglik_at_chain_means=loglik,
        params={k: {"truth": truth[k], "mean": float(table.loc[k, "mean"]),
                    "sd": float(table.loc[k, "sd"]), "hdi_3%": float(table.loc[k, "hdi_3%"]),
                    "hdi_97%": float(table.loc[k, "hdi_97%"]), "ess_bulk": float(table.loc[k, "ess_bulk"]),
                    "r_hat": float(table.loc[k, "r_hat"]), "inside_94": inside[k]} for k in truth},
    )
    return run


def median_seconds(calls: dict, reps: int) -> dict[str, float]:
    """Median wall seconds of one blocked call of each ``name -> (fn, arg)``, after compiling.

    The calls are interleaved round-robin so that other load on the machine hits all alike.
    """
    for fn, arg in calls.values():
        for _ in range(3):
            jax.block_until_ready(fn(arg))
    times = {k: [] for k in calls}
    for _ in range(reps):
        for k, (fn, arg) in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times[k].append(time.perf_counter() - t0)
    return {f"{k}_seconds": float(np.median(v)) for k, v in times.items()}


def gradient_costs(model, telescope, data, truth_params: dict, reps: int) -> dict:
    """Seconds per gradient of each NumPyro potential and of a bare jit(grad) of the same density."""
    jdata = jnp.asarray(data)
    key = jax.random.PRNGKey(0)
    sm_info = initialize_model(key, model, model_kwargs={"data": jdata})
    tut_info = initialize_model(key, tutorial_program,
                                model_kwargs={"data": jdata, "telescope": telescope})
    priors = model.priors()

    def bare_starmodels(params):  # physical parameters, starmodels' render and priors
        lp = dist.Poisson(jnp.clip(model.render(params), 1e-10)).log_prob(jdata).sum()
        return lp + sum(priors[k].log_prob(params[k]).sum() for k in priors)

    def bare_tutorial(params):  # tutorial units, the dLux telescope; uniform priors are constant
        image = telescope.set(PATHS, tutorial_values(**params)).model()
        return dist.Poisson(image).log_prob(jdata).sum()

    grad = lambda f: jax.jit(jax.grad(f))
    t = median_seconds({
        "bare_starmodels": (grad(bare_starmodels), truth_params),
        "starmodels_potential": (grad(sm_info.potential_fn), sm_info.param_info.z),
        "bare_tutorial": (grad(bare_tutorial), to_tutorial_units(truth_params)),
        "tutorial_potential": (grad(tut_info.potential_fn), tut_info.param_info.z),
    }, reps)
    return {"reps": reps, **t,
            "starmodels_over_bare": t["starmodels_potential_seconds"] / t["bare_starmodels_seconds"],
            "tutorial_over_bare": t["tutorial_potential_seconds"] / t["bare_tutorial_seconds"]}


# -- reporting --------------------------------------------------------------------------------
ROWS = [  # label, key, format
    ("warmup iterations / chain", "warmup", "{:d}"),
    ("post-warmup draws / chain", "samples", "{:d}"),
    ("free parameters", "n_params", "{:d}"),
    ("compile s", "compile_seconds", "{:.1f}"),
    ("MAP init s", "init_seconds", "{:.1f}"),
    ("warmup s", "warmup_seconds", "{:.1f}"),
    ("sampling s", "sampling_seconds", "{:.1f}"),
    ("min ess_bulk", "min_ess_bulk", "{:.0f}"),
    ("... of parameter", "min_ess_param", "`{}`"),
    ("min ESS / sampling s", "ess_per_sampling_second", "{:.2f}"),
    ("min ESS / (init+warmup+sampling) s", "ess_per_run_second", "{:.2f}"),
    ("gradient evals, sampling", "gradient_evals_sampling", "{:d}"),
    ("gradient evals, total", "gradient_evals", "{:d}"),
    ("min ESS / 1000 grads, sampling", "ess_per_kgrad_sampling", "{:.2f}"),
    ("min ESS / 1000 grads, total", "ess_per_kgrad_total", "{:.2f}"),
    ("ms / gradient in sampler (busiest chain)", "ms_per_grad_in_sampler", "{:.2f}"),
    ("max r_hat", "max_r_hat", "{:.3f}"),
    ("divergences", "divergences", "{:d}"),
    ("truth in 94% HDI (of 13)", "truth_inside_94", "{:d}"),
    ("machine load (1-min average) before, after", "load_1min_before_after", "{0[0]:.1f}, {0[1]:.1f}"),
]


def table_lines(res: dict) -> list[str]:
    a, b, g = res["tutorial"], res["starmodels"], res["gradient_cost"]
    lines = ["| metric | (a) tutorial: bare dLux + NumPyro | (b) starmodels `binary_star` |",
             "|---|---:|---:|"]
    lines += [f"| {label} | {fmt.format(a[key])} | {fmt.format(b[key])} |" for label, key, fmt in ROWS]
    ll = lambda r: ", ".join(f"{v:.1f}" for v in r["loglik_at_chain_means"])
    lines += [
        f"| Poisson log L at each chain's mean (truth {res['data']['loglik_at_truth']:.1f}) "
        f"| {ll(a)} | {ll(b)} |",
        f"| ms / grad of bare `jit(grad(log density))` | {1e3 * g['bare_tutorial_seconds']:.3f} "
        f"| {1e3 * g['bare_starmodels_seconds']:.3f} |",
        f"| ms / grad of the NumPyro potential | {1e3 * g['tutorial_potential_seconds']:.3f} "
        f"| {1e3 * g['starmodels_potential_seconds']:.3f} |",
        f"| potential / bare | {g['tutorial_over_bare']:.3f} | {g['starmodels_over_bare']:.3f} |",
    ]
    return lines


def write_markdown(path: Path, res: dict) -> None:
    v = res["versions"]
    text = "\n".join([
        "# binary_star: starmodels vs the dLux tutorial's NumPyro program", "",
        f"Command: `{res['command']}`", "",
        f"Machine: {res['machine']['cpu_count']} CPU cores, {res['machine']['jax_devices']} JAX host "
        f"devices; {CHAINS} chains in parallel. Versions: "
        + ", ".join(f"{k} {v[k]}" for k in PACKAGES) + ".", "",
        "starmodels source: commit {git_commit}, uncommitted changes: {dirty}, file hash {source_sha256_16}, "
        "changed during the run: {changed_during_run}.".format(**res["starmodels_source"]),
        "",
        f"Render check: max |bare dLux - starmodels| / peak at the truth = "
        f"{res['render_check']['max_abs_diff_over_peak']:.2e}.", "",
        *table_lines(res), "",
        "(a): uniform priors, diagonal mass, init_to_uniform, default NUTS. (b): the card's priors "
        "(O(1) latents), dense mass, MAP init (its gradients are in the total), Poisson noise. "
        "ESS is the minimum ess_bulk over the same 13 physical parameters; compile time is excluded "
        "from every rate.", "",
    ])
    path.write_text(text)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=1000, help="post-warmup draws per chain (both)")
    p.add_argument("--tutorial-warmup", type=int, default=1000,
                   help="warmup for (a); the tutorial used 2000")
    p.add_argument("--warmup", type=int, default=None, help="warmup for (b); default: the card's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grad-reps", type=int, default=300, help="timed calls per gradient benchmark")
    p.add_argument("--out", type=Path, default=None, help=f"JSON path (default {DEFAULT_OUT})")
    p.add_argument("--quick", action="store_true", help="tiny run, a smoke check")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.tutorial_warmup, args.warmup, args.grad_reps = 30, 30, 30, 10
    out = args.out or (DEFAULT_OUT.with_name(DEFAULT_OUT.stem + "_quick.json") if args.quick
                       else DEFAULT_OUT)

    load_start = list(os.getloadavg())  # other work on the machine skews every timing
    lib_start = library_state()
    z = sm.zoo.load("binary_star")
    warmup = args.warmup or z.fit_defaults["num_warmup"]
    model = z.model.with_noise(Poisson())
    truth_params = {k: jnp.asarray(v) for k, v in z.truth.items()}
    expected = z.model.render(truth_params)
    data = np.asarray(jax.random.poisson(jax.random.PRNGKey(args.seed), expected), float)
    labels = model.labels()
    truth = flat_truth(z.truth, labels)
    loglik = lambda params: float(model.noise.log_prob(model.render(params), data).sum())

    def chain_loglik(flat: dict) -> list[float]:  # Poisson log L at each chain's mean: which mode?
        means = [{k: v[c].mean() for k, v in flat.items()} for c in range(CHAINS)]
        return [loglik({**{k: m[k] for k in m if "[" not in k},
                        **{k: jnp.asarray([m[f"{k}[{lab}]"] for lab in labs]) for k, labs in labels.items()}})
                for m in means]

    telescope = tutorial_telescope(z.card)
    image = telescope.set(PATHS, tutorial_values(**to_tutorial_units(truth_params))).model()
    diff = float(jnp.max(jnp.abs(image - expected)) / jnp.max(expected))
    print(f"render check: max |bare dLux - starmodels| / peak = {diff:.2e}")
    assert diff < 1e-4, "the bare dLux telescope does not reproduce starmodels' render"

    print(f"(a) tutorial program: {CHAINS} chains x ({args.tutorial_warmup} warmup + {args.samples})")
    load0 = os.getloadavg()[0]
    a = run_tutorial(telescope, jnp.asarray(data), labels, args.tutorial_warmup, args.samples, args.seed)
    load1 = os.getloadavg()[0]
    print(f"(b) starmodels binary_star: {CHAINS} chains x ({warmup} warmup + {args.samples})")
    b = run_starmodels(model, data, z.fit_defaults, warmup, args.samples, args.seed)
    a["load_1min_before_after"], b["load_1min_before_after"] = [load0, load1], [load1, os.getloadavg()[0]]
    print("gradient cost ...")
    grads = gradient_costs(model, telescope, data, truth_params, args.grad_reps)

    res = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "versions": {"python": platform.python_version(), **{k: version(k) for k in PACKAGES}},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "jax_devices": jax.local_device_count(),
                    "load_average_start": load_start, "load_average_end": list(os.getloadavg())},
        "data": {"seed": args.seed, "total_counts": float(data.sum()), "peak_counts": float(data.max()),
                 "shape": list(data.shape), "loglik_at_truth": loglik(truth_params)},
        "render_check": {"max_abs_diff_over_peak": diff},
        "starmodels_source": {**lib_start, "changed_during_run": lib_start != library_state()},
        "tutorial": analyse(a, truth, args.samples, chain_loglik(a["flat"])),
        "starmodels": analyse(b, truth, args.samples, chain_loglik(b["flat"])),
        "gradient_cost": grads,
    }
    print("\n" + "\n".join(table_lines(res)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    write_markdown(out.with_suffix(".md"), res)
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return res


if __name__ == "__main__":
    main()
