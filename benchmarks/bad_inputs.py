"""A battery of bad inputs and options (issue 9): is each refused before any work, with a clear error?

Runs some 250 cases (every option of every method, seeds, data, priors, truth, models, grid and
amortized limits, result and encoder files, FITS and SDSS files, PSFs, the CLI, plus a few inputs
that should be accepted) and records per case: id, category, what was passed, the outcome class,
the exception type and the first line of its message, where it was raised, and how many XLA
compilations happened before the outcome (a ``jax.monitoring`` listener on
``/jax/core/compile/backend_compile_duration``; the in-process cache of compiled runners is
cleared before each case so that reaching a compiled program always shows).

Outcome classes, decided automatically:

- ``clear``: an exception of a type starmodels defines, or a built-in ValueError / TypeError /
  KeyError / FileNotFoundError / FileExistsError, whose innermost raising frame is a file of the
  ``starmodels`` package, with a non-empty message. A built-in ValueError/TypeError/KeyError raised
  *implicitly* in starmodels code (the line is not a ``raise`` statement: an operator, ``np.asarray``
  or a dict lookup failed, e.g. ``'<=' not supported between 'str' and 'int'``) counts as ``deep``:
  its message comes from Python or numpy and does not name the input. An OSError raised by ``open``
  in starmodels code names the file and counts as ``clear``.
- ``deep``: raised outside the package (jax, numpyro, numpy, astropy, arviz, ...), or an unexpected
  type (RuntimeError, AttributeError, IndexError, jax errors, ...); for the CLI, an exception that
  escapes ``main`` (a traceback instead of exit status 2).
- ``silent``: no exception, but the input is bad (a bad option was ignored or the input accepted)
  or the result holds NaN/inf.
- ``accepted``: no exception, the input is acceptable and the result finite (the note says why).

    python -m benchmarks.bad_inputs          # writes benchmarks/results/bad_inputs.json / .md

About a minute on 2 cores (a dozen cases run short fits or reach a compiled program).
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import io
import json
import linecache
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from astropy.io import fits

import starmodels as sm
from benchmarks.record import write_record
from starmodels import cli
from starmodels.detectors import PixelDetector
from starmodels.forward import ForwardModel
from starmodels.image_psf import ImagePSF, triangle_psf
from starmodels.infer import compiled, registry
from starmodels.infer.amortized import Amortizer, Encoder
from starmodels.io import KLPsf, Observation, read_image, read_sdss_frame
from starmodels.noise import Gaussian, Poisson, PoissonGaussian
from starmodels.optics import TelescopeOptics
from starmodels.plate import ImagePlate
from starmodels.results import Posterior, build_idata
from starmodels.sources import PointSource
from tests.conftest import SMALL_TRUTH, small_model

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PKG = Path(sm.__file__).resolve().parent
SDSS = Path(os.environ.get("STARMODELS_SDSS_DATA", Path(__file__).resolve().parents[2] / "shared/data/sdss"))
FIELD = SDSS / "2583" / "2" / "136"
FRAME = FIELD / "frame-r-002583-2-0136.fits.bz2"
PSFIELD = FIELD / "psField-002583-2-0136.fits"
ALLOWED_BUILTINS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError)
TARGET = ("no deep or silent case; every refusal before any compilation, except for problems that only "
          "running the fit can reveal")
# Problems only the fit itself can reveal: an optimisation that diverges, a posterior that sits at the
# edge of the prior's range. Refused with a clear error, necessarily after compiling the fit.
RUNTIME_ONLY = {"svi.lr=1e8", "grid.prior far from data"}

# cheap settings: a bad input that slips through runs a short fit, not a long one
NUTS = {"num_chains": 1, "num_warmup": 10, "num_draws": 10, "init": "prior"}
SVI = {"num_restarts": 1, "num_steps": 100, "chunk": 50, "num_draws": 10, "init": "prior"}
AMORT = {"num_draws": 10, "num_proposals": 50, "batch": 16}


@dataclass
class Case:
    id: str
    category: str
    passed: str
    run: Callable[[], Any]
    bad: bool = True  # False: the input is acceptable (checks for false rejections)
    note: str = ""
    cli: bool = False


@dataclass
class Outcome:
    outcome: str
    compiles: int
    seconds: float
    error_type: str = ""
    message: str = ""
    raised_at: str = ""
    starmodels_frame: str = ""
    reached_runner: bool = False
    notes: list = field(default_factory=list)


class ReachedFit(Exception):
    """Raised by the stand-in for ``sm.fit`` in CLI cases: the CLI did not refuse before fitting."""


# -- helpers ------------------------------------------------------------------------------------
def fit(model, data, **kw):
    kw.setdefault("progress", False)
    return sm.fit(model, data, **kw)


def _short(path: str) -> str:
    p = Path(path).resolve()
    if p.is_relative_to(PKG):
        return "starmodels/" + str(p.relative_to(PKG))
    if "site-packages" in p.parts:
        return "/".join(p.parts[p.parts.index("site-packages") + 1:])
    return p.name


def _frames(exc) -> list[tuple[str, int, str]]:
    out, tb = [], exc.__traceback__
    while tb is not None:
        out.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno, tb.tb_frame.f_code.co_name))
        tb = tb.tb_next
    return out


def _in_pkg(filename: str) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(PKG)
    except OSError:
        return False


def _first_line(text: str, n: int = 200) -> str:
    line = next((s for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= n else line[: n - 3] + "..."


def classify_exception(exc, out: Outcome) -> None:
    frames = _frames(exc)
    out.error_type = f"{type(exc).__module__}.{type(exc).__name__}".removeprefix("builtins.")
    out.message = _first_line(exc)
    fname, line, func = frames[-1] if frames else ("?", 0, "?")
    out.raised_at = f"{_short(fname)}:{line} ({func})"
    ours = [f for f in frames if _in_pkg(f[0])]
    if ours:
        out.starmodels_frame = f"{_short(ours[-1][0])}:{ours[-1][1]} ({ours[-1][2]})"
    own_type = type(exc).__module__.startswith("starmodels")
    explicit = linecache.getline(fname, line).strip().startswith("raise")
    if not str(exc).strip():
        out.outcome = "deep"
        out.notes.append("empty message")
    elif not _in_pkg(fname):
        out.outcome = "deep"
    elif own_type:
        out.outcome = "clear"
    elif isinstance(exc, FileNotFoundError | FileExistsError):
        out.outcome = "clear"
    elif type(exc) in ALLOWED_BUILTINS or isinstance(exc, ValueError | TypeError | KeyError) and \
            type(exc).__module__ == "builtins":
        if explicit:
            out.outcome = "clear"
        else:
            out.outcome = "deep"
            out.notes.append(f"implicit {type(exc).__name__} (not a raise statement): "
                             f"`{linecache.getline(fname, line).strip()[:90]}`")
    else:
        out.outcome = "deep"
        if explicit:
            out.notes.append(f"explicit raise in starmodels, but of type {type(exc).__name__}")


def garbage(obj) -> str | None:
    """What is non-finite in a result (posterior draws, arrays, observations, modules), else None."""
    if isinstance(obj, Posterior):
        leaves = {k: np.asarray(v) for k, v in obj.draws().items()}
    elif isinstance(obj, Observation):
        leaves = {"data": np.asarray(obj.data)[np.asarray(obj.use, bool)]}
    elif isinstance(obj, Amortizer):
        leaves = {"elbo": np.asarray(obj.meta.get("elbo_trace", [0.0]))}
    else:
        leaves = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(obj)
                  if isinstance(v, np.ndarray | jax.Array)}
    bad = [k for k, v in leaves.items() if v.dtype.kind in "fc" and not np.all(np.isfinite(v))]
    return f"non-finite values in {bad}" if bad else None


def describe(obj) -> str:
    if isinstance(obj, Posterior):
        post = obj.idata.posterior
        return f"Posterior ({obj.method}, {post.sizes['chain']}x{post.sizes['draw']} draws)"
    if isinstance(obj, Amortizer) and "num_steps" in obj.meta:
        return f"Amortizer trained for {obj.meta['num_steps']} steps"
    return type(obj).__name__


class _LogCapture(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record):
        self.records.append(record.getMessage())


def run_case(case: Case) -> Outcome:
    compiled.clear()  # every compiled runner is rebuilt: reaching one shows as a compilation
    count = [0]
    names: list[str] = []
    reached = [False]

    def listener(event, duration, **kw):
        if event == COMPILE_EVENT:
            count[0] += 1
            if len(names) < 3:
                names.append(str(kw.get("fun_name", "?")))

    originals = dict(registry._RUNNERS)

    def wrap(runner):
        def run(model, data, opts):
            reached[0] = True
            return runner.run(model, data, opts)
        return dataclasses.replace(runner, run=run)

    for name, runner in originals.items():
        registry._RUNNERS[name] = wrap(runner)
    logs = _LogCapture()
    slog = logging.getLogger("starmodels")
    slog.addHandler(logs)
    propagate, level = slog.propagate, slog.level
    slog.propagate = False
    slog.setLevel(logging.WARNING)
    jax.monitoring.register_event_duration_secs_listener(listener)
    t0 = time.perf_counter()
    result, exc = None, None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = case.run()
            except Exception as err:  # the point of the battery
                exc = err
    finally:
        seconds = time.perf_counter() - t0
        jax.monitoring.unregister_event_duration_listener(listener)
        registry._RUNNERS.update(originals)
        slog.removeHandler(logs)
        slog.propagate = propagate
        slog.setLevel(level)
    out = Outcome("", count[0], seconds, reached_runner=reached[0])
    if case.cli:
        _classify_cli(case, result, exc, out)
    elif exc is not None:
        classify_exception(exc, out)
    else:
        bad = garbage(result)
        if bad:
            out.outcome = "silent"
            out.notes.append(f"no error; {describe(result)} with {bad}")
        elif case.bad:
            out.outcome = "silent"
            out.notes.append(f"no error: the bad input was accepted ({describe(result)})")
        else:
            out.outcome = "accepted"
            out.notes.append(f"accepted as expected ({describe(result)})")
    if out.compiles and out.outcome != "accepted":
        out.notes.append(f"{out.compiles} XLA compilation(s) before the outcome (first: {', '.join(names)})"
                         + ("; the runner had started" if out.reached_runner else ""))
    seen = set()
    for w in caught:
        msg = f"{w.category.__name__}: {_first_line(w.message, 120)}"
        if msg not in seen and len(seen) < 2:
            seen.add(msg)
            out.notes.append("warning " + msg)
    for rec in logs.records[:2]:
        out.notes.append("log: " + _first_line(rec, 120))
    if case.note:
        out.notes.insert(0, case.note)
    return out


def _classify_cli(case: Case, result, exc, out: Outcome) -> None:
    if exc is not None:
        if isinstance(exc, ReachedFit):
            out.outcome = "silent" if case.bad else "accepted"
            out.notes.append("the CLI went on to sm.fit without refusing the input" if case.bad
                             else "reached sm.fit as expected")
            return
        classify_exception(exc, out)
        out.outcome = "deep"
        out.notes.append("an exception escaped starmodels.cli.main (a traceback, not exit status 2)")
        return
    _, code, err = result
    out.error_type = f"exit status {code}"
    lines = [s for s in err.splitlines() if s.strip()]
    out.message = _first_line(next((s for s in lines if "error" in s), lines[-1] if lines else ""))
    if code == 2 and out.message:
        out.outcome = "clear"
    elif code == 0:
        out.outcome = "silent" if case.bad else "accepted"
        out.notes.append("exit status 0" + (" for a bad input" if case.bad else ", as expected"))
    else:
        out.outcome = "deep"


def run_cli(args, stub_fit: bool = True):
    """``starmodels.cli.main(args)`` with stderr captured; ``sm.fit`` replaced by a stand-in that raises."""
    err = io.StringIO()
    real = sm.fit
    root_handlers = list(logging.getLogger().handlers)  # main() calls logging.basicConfig

    def stand_in(*a, **k):
        raise ReachedFit("sm.fit was called")

    if stub_fit:
        sm.fit = stand_in
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = cli.main(list(args))
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        sm.fit = real
        logging.getLogger().handlers[:] = root_handlers
    return ("cli", code, err.getvalue())


# -- the battery --------------------------------------------------------------------------------
def build_cases(tmp: Path) -> list[Case]:
    cases: list[Case] = []

    def add(id_, category, passed, fn, bad=True, note="", cli_=False):
        cases.append(Case(id_, category, passed, fn, bad, note, cli_))

    model = small_model()
    data = model.simulate(SMALL_TRUTH, seed=3)
    z = sm.zoo.load("star_flux")
    zdata, _ = z.simulate(seed=0)
    binary = sm.zoo.load("binary_star")
    bdata = np.zeros(binary.model.shape)

    # a cheap model with a vector site (3 Zernike terms)
    vec_model = ForwardModel(
        PointSource({"x": dist.Normal(0.0, 0.05), "y": dist.Normal(0.0, 0.05),
                     "log_flux": dist.Normal(4.0, 0.5)}),
        TelescopeOptics(dist.Normal(jnp.zeros(3), 20.0), wf_npixels=32, psf_npixels=12, pixel_scale=0.05,
                        noll=(4, 5, 6), wavelengths_nm=(600.0,)),
        PixelDetector(12, 0.05, 1), Poisson(), name="small_vec")

    # encoders (untrained: only their files and site checks matter)
    enc15 = Encoder((15, 15), 1, width=8, depth=1, key=jax.random.PRNGKey(0))
    amort = Amortizer(model=z.model, encoder=enc15)
    other_plate = ImagePlate(small_model().with_fixed({"source.x": 0.0, "source.y": 0.0}),
                             ["source.log_flux"], 4)
    shared_plate = ImagePlate(small_model(), ["source.log_flux"], 4)  # source.x, source.y shared
    amort_other = Amortizer(model=other_plate, encoder=Encoder((12, 12), 1, width=8, depth=1,
                                                                 key=jax.random.PRNGKey(0)))
    card13 = sm.zoo.card("star_flux")
    card13["detector"]["npixels"] = 13
    card13["optics"]["psf_args"] = {"half_width": 7}
    plate13 = sm.zoo.build(card13)
    amort13 = Amortizer(model=plate13, encoder=Encoder((13, 13), 1, width=8, depth=1,
                                                        key=jax.random.PRNGKey(0)))

    # result files written without a fit
    post = Posterior(idata=build_idata({"source.x": np.zeros((1, 5)), "source.y": np.ones((1, 5))}, {}),
                     meta={"method": "nuts", "model": "small"})
    post.to_netcdf(tmp / "post.nc")
    raw = (tmp / "post.nc").read_bytes()
    (tmp / "cut.nc").write_bytes(raw[: len(raw) // 2])
    (tmp / "random.nc").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp / "empty.nc").write_bytes(b"")
    (tmp / "text.nc").write_text("chain,draw,source.x\n0,0,0.1\n")
    post.idata.to_netcdf(str(tmp / "plain.nc"))  # arviz file without starmodels metadata
    post.save(tmp / "res")
    for name in ("res_nomanifest", "res_edited", "res_badmanifest", "res_missing"):
        shutil.copytree(tmp / "res", tmp / name)
    (tmp / "res_nomanifest" / "manifest.json").unlink()
    with open(tmp / "res_edited" / "summary.csv", "a") as f:
        f.write("extra,1\n")
    (tmp / "res_badmanifest" / "manifest.json").write_text("{not json")
    (tmp / "res_missing" / "posterior.nc").unlink()
    nuts_like = Posterior(idata=post.idata, meta={"method": "nuts"})
    svi_other = Posterior(idata=post.idata, meta={"method": "svi", "latent_mean": {"other_base": [0.0]}})

    # encoder files
    amort.save(tmp / "enc.eqx")
    enc_raw = (tmp / "enc.eqx").read_bytes()
    head_len = enc_raw.index(b"\n") + 1
    (tmp / "enc_cut.eqx").write_bytes(enc_raw[: head_len + 200])
    (tmp / "enc_head.eqx").write_bytes(enc_raw[:20])
    (tmp / "enc_random.eqx").write_bytes(np.random.default_rng(1).bytes(3000))
    (tmp / "enc_empty.eqx").write_bytes(b"")
    head = json.loads(enc_raw[:head_len])
    (tmp / "enc_format.eqx").write_bytes(json.dumps({**head, "format": "other-2"}).encode() + b"\n"
                                         + enc_raw[head_len:])

    # FITS files
    sci = np.random.default_rng(0).normal(100.0, 5.0, (50, 60)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                  fits.ImageHDU(np.full((50, 60), 5.0, np.float32), name="ERR")]).writeto(tmp / "good.fits")
    good = (tmp / "good.fits").read_bytes()
    (tmp / "enc_fits.eqx").write_bytes(good)
    files = {"cut.fits": good[:5000], "empty.fits": b"", "text.fits": b"ra dec flux\n1.0 2.0 3.0\n" * 50,
             "html.fits": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
             "random.fits": np.random.default_rng(2).bytes(6000),
             "cutdata.fits": good[: 5760 + 6000], "cut.fits.gz": gzip.compress(good)[:-100],
             "bad.fits.bz2": bz2.compress(good)[:2000]}
    for name, content in files.items():
        (tmp / name).write_bytes(content)

    # SDSS copies (damaged here, never in ../shared)
    sdss_ok = sdss_files = (FRAME.is_file() and PSFIELD.is_file())
    kl = None
    if sdss_files:
        for d in ("sdss", "cutframe", "psf"):
            (tmp / d).mkdir()
        shutil.copy(FRAME, tmp / "sdss" / FRAME.name)
        shutil.copy(PSFIELD, tmp / "sdss" / PSFIELD.name)
        (tmp / "cutframe" / FRAME.name).write_bytes(FRAME.read_bytes()[:1_500_000])
        psf_raw = PSFIELD.read_bytes()
        (tmp / "psf" / "head.fits").write_bytes(psf_raw[:5000])
        (tmp / "psf" / "half.fits").write_bytes(psf_raw[:200_000])
        kl = KLPsf.from_psfield(PSFIELD, "r")

    # ---- options of every method ----
    opt_cases = [
        ("nuts", "num_chains", 0), ("nuts", "num_chains", 2.5), ("nuts", "num_chains", True),
        ("nuts", "num_chains", "2"), ("nuts", "num_warmup", -5), ("nuts", "num_warmup", math.nan),
        ("nuts", "num_draws", 0), ("nuts", "num_draws", math.inf), ("nuts", "dense_mass", "yes"),
        ("nuts", "dense_mass", 1), ("nuts", "init", "median"), ("nuts", "init", None),
        ("nuts", "target_accept", 1.0), ("nuts", "target_accept", math.nan),
        ("nuts", "target_accept", -0.5), ("nuts", "target_accept", "0.8"), ("nuts", "max_tree_depth", 0),
        ("nuts", "max_tree_depth", 16), ("nuts", "max_tree_depth", 10.0), ("nuts", "chain_method", "magic"),
        ("nuts", "map_starts", 0), ("nuts", "map_starts", True), ("nuts", "progress", "no"),
        ("svi", "guide", "gaussian"), ("svi", "guide", "MeanField"), ("svi", "num_steps", 0),
        ("svi", "lr", math.nan), ("svi", "lr", -1e-3), ("svi", "lr", math.inf), ("svi", "lr", "0.01"),
        ("svi", "num_restarts", 0), ("svi", "chunk", 0), ("svi", "patience", 0), ("svi", "tol", -1.0),
        ("svi", "tol", math.nan), ("svi", "refine", -1), ("svi", "refine", 1001), ("svi", "num_particles", 0),
        ("svi", "num_draws", 0), ("svi", "init", "median"), ("svi", "warm_start", "fit.nc"),
        ("grid", "num_points", 0), ("grid", "num_points", 7), ("grid", "num_points", 5000),
        ("grid", "refine", -1), ("grid", "refine", 11), ("grid", "num_draws", 0),
        ("amortized", "num_draws", 0), ("amortized", "importance", "yes"), ("amortized", "num_proposals", 0),
        ("amortized", "batch", 0), ("amortized", "amortizer", "enc.eqx"),
    ]
    base = {"nuts": NUTS, "svi": SVI, "grid": {}, "amortized": {**AMORT, "amortizer": amort}}
    for method, name, value in opt_cases:
        m, d = (z.model, zdata) if method in ("grid", "amortized") else (model, data)
        opts = {**base[method], name: value}
        add(f"{method}.{name}={value!r}", f"option {method}", f"{name}={value!r}",
            lambda m=m, d=d, method=method, opts=opts: fit(m, d, method=method, **opts))

    more_opts = [
        ("nuts.chain_method=parallel,num_chains=3", "nuts", model, data,
         {**NUTS, "num_chains": 3, "chain_method": "parallel"}, "3 parallel chains on 2 devices"),
        ("nuts.unknown lr", "nuts", model, data, {**NUTS, "lr": 0.1}, "lr=0.1 (an SVI option)"),
        ("nuts.misspelt num_draw", "nuts", model, data, {**NUTS, "num_draw": 10}, "num_draw=10"),
        ("nuts.misspelt num_warmpu", "nuts", model, data, {**NUTS, "num_warmpu": 10}, "num_warmpu=10"),
        ("nuts.num_steps", "nuts", model, data, {**NUTS, "num_steps": 10}, "num_steps=10 (an SVI option)"),
        ("nuts.samples+num_draws", "nuts", model, data, {**NUTS, "samples": 10}, "samples=10, num_draws=10"),
        ("nuts.warmup+num_warmup", "nuts", model, data, {**NUTS, "warmup": 10}, "warmup=10, num_warmup=10"),
        ("nuts.chains+num_chains", "nuts", model, data, {**NUTS, "chains": 1}, "chains=1, num_chains=1"),
        ("svi.num_chains", "svi", model, data, {**SVI, "num_chains": 2}, "num_chains=2"),
        ("svi.steps+num_steps", "svi", model, data, {**SVI, "steps": 100}, "steps=100, num_steps=100"),
        ("svi.restarts+num_restarts", "svi", model, data, {**SVI, "restarts": 1},
         "restarts=1, num_restarts=1"),
        ("svi.warm_start=nuts posterior", "svi", model, data, {**SVI, "warm_start": nuts_like},
         "warm_start=a NUTS Posterior"),
        ("svi.warm_start=other model", "svi", model, data, {**SVI, "warm_start": svi_other},
         "warm_start=SVI Posterior whose latent_mean has other sites"),
        ("grid.points+num_points", "grid", z.model, zdata, {"points": 64, "num_points": 64},
         "points=64, num_points=64"),
        ("grid.num_chains", "grid", z.model, zdata, {"num_chains": 2}, "num_chains=2"),
        ("amortized.no amortizer", "amortized", z.model, zdata, dict(AMORT), "no amortizer="),
        ("amortized.other model", "amortized", z.model, zdata, {**AMORT, "amortizer": amort_other},
         "amortizer trained for another plate (site source.log_flux_base)"),
        ("amortized.13x13 encoder", "amortized", z.model, zdata, {**AMORT, "amortizer": amort13},
         "amortizer for the same site on 13x13 images (the data are 15x15)"),
        ("amortized.single-image model", "amortized", model, data, {**AMORT, "amortizer": amort},
         "amortized on a one-image model"),
    ]
    for id_, method, m, d, opts, passed in more_opts:
        add(id_, f"option {method}", passed,
            lambda m=m, d=d, method=method, opts=opts: fit(m, d, method=method, **opts))
    add("svi.lr=1e8", "option svi", "lr=1e8 (valid type, absurd value)",
        lambda: fit(model, data, method="svi", **{**SVI, "lr": 1e8}), bad=False,
        note="a legal value: accepted unless the result is garbage")
    add("nuts.aliases only", "option nuts", "chains=1, warmup=10, samples=10 (old names)",
        lambda: fit(model, data, chains=1, warmup=10, samples=10, init="prior"), bad=False,
        note="old names still work, with a FutureWarning")
    add("amortized.untrained encoder", "option amortized", "an untrained Amortizer (good options)",
        lambda: fit(z.model, zdata, method="amortized", amortizer=amort, **AMORT), bad=False,
        note="legal: an untrained encoder as the importance proposal")
    add("method=gibbs", "method", "method='gibbs'", lambda: fit(model, data, method="gibbs"))
    add("method=NUTS", "method", "method='NUTS'", lambda: fit(model, data, method="NUTS"))
    add("method=None", "method", "method=None", lambda: fit(model, data, method=None))
    add("method_options(gibbs)", "method", "sm.method_options('gibbs')", lambda: sm.method_options("gibbs"))

    # ---- seeds ----
    for value in (-1, 1.5, "0", None, 2**32, True):
        add(f"seed={value!r}", "seed", f"seed={value!r}", lambda v=value: fit(model, data, seed=v, **NUTS))
    add("seed=np.int64(5)", "seed", "seed=np.int64(5)", lambda: fit(model, data, seed=np.int64(5), **NUTS),
        bad=False, note="a numpy integer is a fine seed")
    add("posterior_for seed=-1", "seed", "Amortizer.posterior_for(images, seed=-1)",
        lambda: amort.posterior_for(zdata, seed=-1))
    add("train_amortized seed=-3", "seed", "train_amortized(seed=-3)",
        lambda: sm.train_amortized(z.model, zdata, seed=-3))

    # ---- data ----
    def with_pixel(value, dtype=float):
        d = np.array(data, dtype=dtype)
        d[3, 4] = value
        return d

    data_cases = [
        ("data.nan pixel", "one NaN pixel", model, with_pixel(np.nan)),
        ("data.inf pixel", "one inf pixel", model, with_pixel(np.inf)),
        ("data.wrong shape", "(11, 12) for a 12x12 model", model, data[:11]),
        ("data.1-D", "144 values, 1-D", model, data.ravel()),
        ("data.3-D", "(2, 12, 12) for a one-image model", model, np.stack([data, data])),
        ("data.empty", "np.array([])", model, np.array([])),
        ("data.None", "data=None", model, None),
        ("data.complex", "complex counts", model, data * (1 + 1j)),
        ("data.strings", "array of strings", model, np.full((12, 12), "a")),
        ("data.object None", "object array with a None", model, with_pixel(None, object)),
        ("data.negative counts", "a -3 pixel under Poisson", model, with_pixel(-3.0)),
        ("data.non-integer counts", "a 2.5 pixel under Poisson", model, with_pixel(2.5)),
        ("data.overflow float32", "a 1e40-count pixel (finite in float64, inf in float32)", model,
         with_pixel(1e40)),
        ("data.plate shape", "one 15x15 image for a 16-image plate", z.model, zdata[0]),
        ("data.(data, truth) tuple", "the (data, truth) tuple of ZooModel.simulate", z.model,
         z.simulate(seed=0)),
    ]
    for id_, passed, m, d in data_cases:
        add(id_, "data", passed,
            lambda m=m, d=d: fit(m, d, method="grid") if m is z.model else fit(m, d, **NUTS))
    all_masked = small_model(Poisson(mask=np.zeros((12, 12), bool)))
    add("data.all masked", "data", "Poisson(mask=all False)", lambda: fit(all_masked, data, **NUTS))
    wrong_mask = small_model(Poisson(mask=np.ones((10, 10), bool)))
    add("data.mask shape", "data", "a 10x10 mask for 12x12 data", lambda: fit(wrong_mask, data, **NUTS))
    add("data.mask not bool", "data", "Poisson(mask=int array)", lambda: Poisson(mask=np.ones((12, 12))))
    neg_sigma = small_model(Gaussian(-1.0))
    add("data.gaussian sigma<0", "data", "Gaussian(sigma=-1) noise", lambda: fit(neg_sigma, data, **NUTS))
    add("data.list of lists", "data", "data.tolist()", lambda: fit(model, data.tolist(), **NUTS), bad=False,
        note="nested lists are fine")
    mask = np.ones((12, 12), bool)
    mask[0, 0] = False
    masked = small_model(Poisson(mask=mask))
    add("data.nan at masked pixel", "data", "NaN at a masked pixel",
        lambda: fit(masked, np.where(mask, data, np.nan), **NUTS), bad=False,
        note="masked pixels may hold NaN (documented)")

    # ---- priors ----
    # numpyro 0.22 refuses some of these itself when the user builds them; validate_args=False (numpyro's
    # default for arrays inside jit) leaves the check to starmodels. Card specs go through starmodels.
    prior_cases = [
        ("prior.uniform low>=high", "source.x ~ Uniform(1, 0)", lambda: dist.Uniform(1.0, 0.0)),
        ("prior.negative scale", "source.x ~ Normal(0, -1, validate_args=False)",
         lambda: dist.Normal(0.0, -1.0, validate_args=False)),
        ("prior.nan loc", "source.x ~ Normal(nan, 1, validate_args=False)",
         lambda: dist.Normal(math.nan, 1.0, validate_args=False)),
        ("prior.card halfnormal<0", "card spec {dist: HalfNormal, scale: -2}",
         lambda: {"dist": "HalfNormal", "scale": -2.0}),
        ("prior.uniform inf", "source.x ~ Uniform(0, inf)", lambda: dist.Uniform(0.0, math.inf)),
        ("prior.card negative scale", "card spec {dist: Normal, loc: 0, scale: -1}",
         lambda: {"dist": "Normal", "loc": 0.0, "scale": -1.0}),
        ("prior.card nan loc", "card spec {dist: Normal, loc: nan, scale: 1}",
         lambda: {"dist": "Normal", "loc": math.nan, "scale": 1.0}),
        ("prior.card uniform low>=high", "card spec {dist: Uniform, low: 1, high: 0}",
         lambda: {"dist": "Uniform", "low": 1.0, "high": 0.0}),
        ("prior.card string", "card spec {dist: Normal, loc: 'zero', scale: 1}",
         lambda: {"dist": "Normal", "loc": "zero", "scale": 1.0}),
    ]
    for id_, passed, make in prior_cases:
        add(id_, "prior", passed, lambda make=make: model.with_priors({"source.x": make()}))
    add("prior.vector length", "prior", "optics.zernike ~ Normal(zeros(2), 20) on a 3-term model",
        lambda: fit(vec_model.with_priors({"optics.zernike": dist.Normal(np.zeros(2), 20.0)}), data, **NUTS))
    add("prior.scalar for vector", "prior", "optics.zernike ~ Normal(0, 20) (scalar) on a 3-term model",
        lambda: fit(vec_model.with_priors({"optics.zernike": dist.Normal(0.0, 20.0)}), data, **NUTS))
    add("prior.unknown site", "prior", "with_priors({'source.z': Normal(0, 1)})",
        lambda: model.with_priors({"source.z": dist.Normal(0.0, 1.0)}))
    add("prior.not a distribution", "prior", "with_priors({'source.x': 0.3})",
        lambda: model.with_priors({"source.x": 0.3}))
    add("prior.card unknown dist", "prior", "{'dist': 'Cauchy', ...}",
        lambda: model.with_priors({"source.x": {"dist": "Cauchy", "loc": 0.0, "scale": 1.0}}))
    add("prior.card missing arg", "prior", "{'dist': 'Normal', 'loc': 0}",
        lambda: model.with_priors({"source.x": {"dist": "Normal", "loc": 0.0}}))
    add("fixed.nan", "prior", "with_fixed({'source.x': nan})",
        lambda: model.with_fixed({"source.x": math.nan}))
    add("fixed.inf", "prior", "with_fixed({'source.x': inf})",
        lambda: model.with_fixed({"source.x": math.inf}))
    add("fixed.unknown site", "prior", "with_fixed({'source.z': 0})",
        lambda: model.with_fixed({"source.z": 0.0}))
    add("fixed.vector for scalar", "prior", "with_fixed({'source.x': [0.1, 0.2]})",
        lambda: fit(model.with_fixed({"source.x": [0.1, 0.2]}), data, **NUTS))
    add("fixed.string", "prior", "with_fixed({'source.x': 'zero'})",
        lambda: model.with_fixed({"source.x": "zero"}))

    # ---- truth ----
    add("truth.unknown site", "truth", "truth={'source.z': 1.0}",
        lambda: fit(model, data, truth={"source.z": 1.0}, **NUTS))
    add("truth.not a dict", "truth", "truth=1.0", lambda: fit(model, data, truth=1.0, **NUTS))
    add("truth.wrong shape", "truth", "truth={'source.x': [1, 2, 3]} for a scalar site",
        lambda: fit(model, data, truth={**SMALL_TRUTH, "source.x": [1.0, 2.0, 3.0]}, **NUTS))
    add("truth.nan", "truth", "truth={'source.x': nan}",
        lambda: fit(model, data, truth={**SMALL_TRUTH, "source.x": math.nan}, **NUTS))

    # ---- flags and non-models ----
    add("x64='yes'", "flags", "x64='yes'", lambda: fit(model, data, x64="yes", **NUTS))
    add("log_likelihood=1", "flags", "log_likelihood=1", lambda: fit(model, data, log_likelihood=1, **NUTS))
    add("model.object()", "model", "fit(object(), data)", lambda: fit(object(), data))
    add("model.ZooModel entry", "model", "fit(sm.zoo.load('star_flux'), data)", lambda: fit(z, zdata))
    add("model.class not instance", "model", "fit(ForwardModel, data) (the class)",
        lambda: fit(ForwardModel, data, **NUTS))

    # ---- model construction ----
    src = {"x": dist.Normal(0.0, 0.05), "y": dist.Normal(0.0, 0.05), "log_flux": dist.Normal(4.0, 0.5)}
    add("source.missing param", "construction", "PointSource without log_flux",
        lambda: PointSource({"x": 0.0, "y": 0.0}))
    add("source.unknown param", "construction", "PointSource with flux= as well",
        lambda: PointSource({**src, "flux": 1.0}))
    add("source.string value", "construction", "PointSource x='abc'",
        lambda: PointSource({**src, "x": "abc"}))
    add("detector.npixels=0", "construction", "PixelDetector(0, 0.05)", lambda: PixelDetector(0, 0.05))
    add("detector.pixel_scale=nan", "construction", "PixelDetector(12, nan)",
        lambda: PixelDetector(12, math.nan))
    add("detector.npixels=12.5", "construction", "PixelDetector(12.5, 0.05)",
        lambda: PixelDetector(12.5, 0.05))
    add("detector.oversample=0", "construction", "PixelDetector(12, 0.05, 0)",
        lambda: PixelDetector(12, 0.05, 0))
    add("optics.zernike length", "construction", "TelescopeOptics(zernike=[1, 2], noll=(4,))",
        lambda: TelescopeOptics(np.array([1.0, 2.0]), wf_npixels=32, psf_npixels=12, pixel_scale=0.05,
                                noll=(4,)))
    add("optics.diameter<0", "construction", "TelescopeOptics(diameter=-1)",
        lambda: TelescopeOptics(jnp.array([20.0]), diameter=-1.0, wf_npixels=32, psf_npixels=12,
                                pixel_scale=0.05, noll=(4,)))
    add("optics.wavelength<0", "construction", "TelescopeOptics(wavelengths_nm=(-600,))",
        lambda: TelescopeOptics(jnp.array([20.0]), wf_npixels=32, psf_npixels=12, pixel_scale=0.05,
                                noll=(4,), wavelengths_nm=(-600.0,)))
    add("model.grid mismatch npixels", "construction", "optics 12 px, detector 13 px",
        lambda: ForwardModel(PointSource(src), model.optics, PixelDetector(13, 0.05, 1), Poisson()))
    add("model.grid mismatch scale", "construction", "optics 0.05\", detector 0.06\"",
        lambda: ForwardModel(PointSource(src), model.optics, PixelDetector(12, 0.06, 1), Poisson()))
    add("plate.no local sites", "construction", "ImagePlate(model, [], 4)", lambda: ImagePlate(model, [], 4))
    add("plate.unknown local", "construction", "ImagePlate(model, ['source.z'], 4)",
        lambda: ImagePlate(model, ["source.z"], 4))
    add("plate.n=0", "construction", "ImagePlate(model, ['source.log_flux'], 0)",
        lambda: ImagePlate(model, ["source.log_flux"], 0))
    add("noise.read_sigma<0", "construction", "PoissonGaussian(read_sigma=-1)", lambda: PoissonGaussian(-1.0))
    add("noise.sigma string", "construction", "Gaussian(sigma='a')", lambda: Gaussian("a"))
    add("zoo.unknown model", "construction", "sm.zoo.load('nope')", lambda: sm.zoo.load("nope"))
    add("zoo.unknown variant", "construction", "sm.zoo.load('star_flux', 'nope')",
        lambda: sm.zoo.load("star_flux", "nope"))
    add("zoo.simulate images on one-image", "construction", "binary_star simulate(images=4)",
        lambda: binary.simulate(images=4))

    # ---- grid limits ----
    add("grid.3 parameters", "grid", "grid on the 3-parameter small model",
        lambda: fit(model, data, method="grid"))
    add("grid.binary_star", "grid", "grid on binary_star (13 parameters)",
        lambda: fit(binary.model, bdata, method="grid"))
    shared = z.model.with_priors({"source.x": dist.Normal(0.0, 0.1)})
    add("grid.shared site", "grid", "grid on a plate with a shared source.x",
        lambda: fit(shared, zdata, method="grid"))
    far = z.model.with_priors({"source.flux": dist.Normal(1000.0, 5000.0)})
    add("grid.prior far from data", "grid", "flux ~ Normal(1000, 5000), true fluxes ~47000-68000",
        lambda: fit(far, zdata, method="grid"), note="can only be found by evaluating the posterior")
    tight = z.model.with_priors({"source.flux": dist.Normal(1000.0, 10.0)})
    add("grid.tight prior far from data", "grid", "flux ~ Normal(1000, 10): the prior dominates",
        lambda: fit(tight, zdata, method="grid"), bad=False,
        note="legal: the likelihood sd (~1500) is far wider than the prior's, the posterior is the prior's")

    # ---- train_amortized ----
    train_cases = [("lr", math.nan), ("num_steps", 0), ("batch", 0), ("width", True), ("depth", 2.5),
                   ("chunk", -1), ("epochs", 3)]
    for name, value in train_cases:
        add(f"train.{name}={value!r}", "train_amortized", f"{name}={value!r}",
            lambda kw={name: value}: sm.train_amortized(z.model, zdata, progress=False, **kw))
    add("train.images shape", "train_amortized", "images (16, 12, 12) for 15x15 images",
        lambda: sm.train_amortized(z.model, zdata[:, :12, :12], progress=False))
    add("train.images nan", "train_amortized", "images with a NaN",
        lambda: sm.train_amortized(z.model, np.where(np.arange(15) == 3, np.nan, zdata), progress=False))
    add("train.one-image model", "train_amortized", "train_amortized(small model)",
        lambda: sm.train_amortized(model, data[None], progress=False))
    add("train.shared site", "train_amortized", "train_amortized(plate with shared source.x)",
        lambda: sm.train_amortized(shared, zdata, progress=False))
    add("train.steps+num_steps", "train_amortized", "steps=1, num_steps=2 (both names)",
        lambda: sm.train_amortized(z.model, zdata, steps=1, num_steps=2, chunk=1, batch=4, width=4, depth=1,
                                   progress=False))
    add("posterior_for num_draws=0", "train_amortized", "Amortizer.posterior_for(num_draws=0)",
        lambda: amort.posterior_for(zdata, num_draws=0))

    # ---- result files ----
    res = [("netcdf.missing", "Posterior.from_netcdf(missing.nc)",
        lambda: Posterior.from_netcdf(tmp / "no.nc")),
           ("netcdf.truncated", "first half of a result file", lambda: Posterior.from_netcdf(tmp / "cut.nc")),
           ("netcdf.random", "5000 random bytes", lambda: Posterior.from_netcdf(tmp / "random.nc")),
           ("netcdf.empty", "an empty file", lambda: Posterior.from_netcdf(tmp / "empty.nc")),
           ("netcdf.text", "a CSV text file", lambda: Posterior.from_netcdf(tmp / "text.nc")),
           ("netcdf.no meta", "an arviz file without starmodels metadata",
            lambda: Posterior.from_netcdf(tmp / "plain.nc")),
           ("netcdf.folder", "a folder", lambda: Posterior.from_netcdf(tmp / "res")),
           ("load.no manifest", "folder without manifest.json",
               lambda: Posterior.load(tmp / "res_nomanifest")),
           ("load.edited file", "summary.csv edited after saving",
               lambda: Posterior.load(tmp / "res_edited")),
           ("load.bad manifest", "manifest.json not JSON", lambda: Posterior.load(tmp / "res_badmanifest")),
           ("load.missing file", "posterior.nc deleted", lambda: Posterior.load(tmp / "res_missing")),
           ("load.a file", "Posterior.load(a .nc file)", lambda: Posterior.load(tmp / "post.nc")),
           ("load.missing folder", "Posterior.load(no such folder)", lambda: Posterior.load(tmp / "nowhere"))]
    for id_, passed, fn in res:
        add(id_, "results", passed, fn)
    add("load.good", "results", "Posterior.load(a saved folder)",
        lambda: Posterior.load(tmp / "res"), bad=False)

    # ---- encoder files ----
    enc = [("encoder.truncated weights", "cut 200 bytes after the header", "enc_cut.eqx", z.model),
           ("encoder.truncated header", "the first 20 bytes", "enc_head.eqx", z.model),
           ("encoder.random", "3000 random bytes", "enc_random.eqx", z.model),
           ("encoder.empty", "an empty file", "enc_empty.eqx", z.model),
           ("encoder.fits", "a FITS file", "enc_fits.eqx", z.model),
           ("encoder.other format", "header format 'other-2'", "enc_format.eqx", z.model),
           ("encoder.missing", "no such file", "nope.eqx", z.model),
           ("encoder.other model", "a star_flux encoder loaded for another plate", "enc.eqx", other_plate),
           ("encoder.shared-site model", "a VALID encoder file, loaded for a plate with shared sites",
            "enc.eqx",
            shared_plate),
           ("encoder.one-image model", "loaded for the one-image small model", "enc.eqx", model)]
    for id_, passed, name, m in enc:
        add(id_, "encoder file", passed, lambda name=name, m=m: Amortizer.load(tmp / name, m))
    add("encoder.good", "encoder file", "Amortizer.load(a saved encoder)",
        lambda: Amortizer.load(tmp / "enc.eqx", z.model), bad=False)

    # ---- FITS ----
    fits_cases = [("fits.truncated header", "first 5000 bytes", "cut.fits"),
                  ("fits.truncated data", "cut in the SCI data", "cutdata.fits"),
                  ("fits.empty", "0 bytes", "empty.fits"), ("fits.text", "a text file", "text.fits"),
                  ("fits.html", "an HTML 404 page", "html.fits"),
                  ("fits.random", "random bytes", "random.fits"),
                  ("fits.gzip cut", "a .fits.gz missing its last 100 bytes", "cut.fits.gz"),
                  ("fits.bz2 cut", "a .fits.bz2 cut at 2000 bytes", "bad.fits.bz2"),
                  ("fits.missing", "no such file", "nope.fits")]
    for id_, passed, name in fits_cases:
        add(id_, "fits", passed, lambda name=name: read_image(tmp / name))
    add("fits.folder", "fits", "read_image(a folder)", lambda: read_image(tmp))
    add("fits.no such hdu", "fits", "read_image(hdu='NOPE')",
        lambda: read_image(tmp / "good.fits", hdu="NOPE"))
    add("fits.hdu index 7", "fits", "read_image(hdu=7)", lambda: read_image(tmp / "good.fits", hdu=7))
    add("fits.err and var", "fits", "read_image(err='ERR', var='ERR')",
        lambda: read_image(tmp / "good.fits", err="ERR", var="ERR"))
    add("fits.good", "fits", "read_image(good.fits, err='ERR')",
        lambda: read_image(tmp / "good.fits", err="ERR"), bad=False)
    add("observation.complex", "fits", "Observation(complex array)",
        lambda: Observation(np.ones((4, 5)) * 1j))
    add("observation.variance shape", "fits", "Observation(4x5 data, 3x5 variance)",
        lambda: Observation(np.ones((4, 5)), variance=np.ones((3, 5))))
    if sdss_files:
        add("sdss.truncated frame", "sdss", "frame-r .fits.bz2 cut at 1.5 MB",
            lambda: read_sdss_frame(tmp / "cutframe" / FRAME.name, gain=4.6, dark_variance=1.0))
        add("sdss.psField head", "sdss", "psField cut at 5000 bytes",
            lambda: KLPsf.from_psfield(tmp / "psf" / "head.fits", "r"))
        add("sdss.psField half", "sdss", "psField cut at 200000 bytes",
            lambda: KLPsf.from_psfield(tmp / "psf" / "half.fits", "r"))
        add("sdss.band x", "sdss", "KLPsf.from_psfield(psField, 'x')",
            lambda: KLPsf.from_psfield(PSFIELD, "x"))
        add("sdss.psField as frame", "sdss", "read_sdss_frame(psField)",
            lambda: read_sdss_frame(tmp / "sdss" / PSFIELD.name, gain=4.6, dark_variance=1.0))
        add("sdss.psf off frame", "sdss", "KLPsf.at(1e5, 1e5)", lambda: kl.at(1e5, 1e5))
        add("sdss.frame good", "sdss", "read_sdss_frame(frame-r with its psField)",
            lambda: read_sdss_frame(tmp / "sdss" / FRAME.name), bad=False)

    # ---- PSFs ----
    tri = triangle_psf(3)
    neg = tri.copy()
    neg[0, :2] = -0.01
    psf_cases = [("psf.negative", "negative pixels", neg, {}),
                 ("psf.nan", "a NaN pixel", np.where(tri == tri.max(), np.nan, tri), {}),
                 ("psf.non-square", "shape (4, 5)", np.ones((4, 5)), {}),
                 ("psf.zeros", "all zeros", np.zeros((5, 5)), {}),
                 ("psf.complex", "complex", tri * 1j, {}), ("psf.empty", "shape (0, 0)", np.ones((0, 0)), {}),
                 ("psf.3-D", "shape (2, 5, 5)", np.ones((2, 5, 5)), {}),
                 ("psf.pixel_scale=0", "pixel_scale=0", tri, {"pixel_scale": 0.0}),
                 ("psf.pixel_scale str", "pixel_scale='0.4'", tri, {"pixel_scale": "0.4"}),
                 ("psf.shift", "shift='cubic'", tri, {"shift": "cubic"}),
                 ("psf.negative option", "negative='ignore'", neg, {"negative": "ignore"}),
                 ("psf.oversample", "5x5 stamp, oversample=2", tri, {"oversample": 2}),
                 ("psf.strings", "an array of strings", np.full((5, 5), "x"), {})]
    for id_, passed, psf, kw in psf_cases:
        add(id_, "psf", passed, lambda psf=psf, kw=kw: ImagePSF(psf, **{"pixel_scale": 0.4, **kw}))
    add("psf.clip", "psf", "negative pixels with negative='clip'",
        lambda: ImagePSF(neg, pixel_scale=0.4, negative="clip"), bad=False, note="clipping is documented")

    # ---- CLI (sm.fit replaced by a stand-in: a refusal must come before it) ----
    afile = tmp / "a_file"
    afile.write_text("x")
    out = str(tmp / "cli_out")
    cli_cases = [
        ("cli.out is a file", ["fit", "star_flux", "--out", str(afile)]),
        ("cli.out unwritable", ["fit", "star_flux", "--out", "/proc/starmodels-bad-inputs/out"]),
        ("cli.out under a file", ["fit", "star_flux", "--out", str(afile / "sub")]),
        ("cli.unknown model", ["fit", "no_such_model", "--out", out]),
        ("cli.bad guide", ["fit", "star_flux", "--out", out, "--method", "svi", "--guide", "nope"]),
        ("cli.num-draws 0", ["fit", "star_flux", "--out", out, "--num-draws", "0"]),
        ("cli.num-chains 0", ["fit", "star_flux", "--out", out, "--num-chains", "0"]),
        ("cli.seed -1", ["fit", "star_flux", "--out", out, "--seed", "-1"]),
        ("cli.num-draws abc", ["fit", "star_flux", "--out", out, "--num-draws", "abc"]),
        ("cli.method hmc", ["fit", "star_flux", "--out", out, "--method", "hmc"]),
        ("cli.guide with nuts", ["fit", "star_flux", "--out", out, "--guide", "nope"]),
        ("cli.num-chains with grid",
         ["fit", "star_flux", "--out", out, "--method", "grid", "--num-chains", "4"]),
    ]
    for id_, args in cli_cases:
        add(id_, "cli", "starmodels " + " ".join(args).replace(str(tmp), "$TMP"),
            lambda args=args: run_cli(args), cli_=True)
    add("cli.grid on binary_star", "cli", "starmodels fit binary_star --method grid (real sm.fit)",
        lambda: run_cli(["fit", "binary_star", "--out", out, "--method", "grid", "--no-progress"],
                        stub_fit=False),
        cli_=True)
    add("cli.list", "cli", "starmodels list", lambda: run_cli(["list"]), bad=False, cli_=True)
    add("cli.good fit args", "cli", "starmodels fit star_flux --num-draws 10 (stand-in sm.fit)",
        lambda: run_cli(["fit", "star_flux", "--out", out, "--num-draws", "10"]), bad=False, cli_=True)
    if not sdss_ok:
        print(f"SDSS files not found under {SDSS}: SDSS cases skipped", file=sys.stderr)
    return cases


# -- report -------------------------------------------------------------------------------------
def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict], counts: dict) -> str:
    lines = [f"{len(rows)} cases: " + ", ".join(f"{counts[k]} {k}" for k in ("clear", "deep", "silent",
                                                                             "accepted")), ""]
    late = [r["id"] for r in rows if r["outcome"] in ("clear", "deep") and r["compiles"]]
    lines += [f"Errors raised only after XLA compilation: {len(late)} ({', '.join(late) or 'none'}); of "
              f"them, only the fit can reveal: {sorted(RUNTIME_ONLY & set(late)) or 'none'}.", ""]
    lines += ["| id | category | passed | outcome | compiled | error type | message | raised at | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(x) for x in (
            r["id"], r["category"], r["passed"], r["outcome"], r["compiles"] or "no", r["error_type"],
            r["message"], r["raised_at"], "; ".join(r["notes"]))) + " |")
    return "\n".join(lines)


def main() -> int:
    t_start = time.perf_counter()
    jax.config.update("jax_traceback_filtering", "off")  # real raising frames, not filtered ones
    warnings.filterwarnings("ignore", category=FutureWarning)
    sm.methods()  # import every runner
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as folder:
        tmp = Path(folder)
        cases = build_cases(tmp)  # builds the models and files: the warm-up
        setup_s = time.perf_counter() - t_start
        print(f"{len(cases)} cases (setup {setup_s:.1f} s)")
        rows = []
        for case in cases:
            o = run_case(case)
            rows.append({"id": case.id, "category": case.category, "passed": case.passed,
                         "bad_input": case.bad,
                         "outcome": o.outcome, "compiles": o.compiles, "reached_runner": o.reached_runner,
                         "error_type": o.error_type, "message": o.message, "raised_at": o.raised_at,
                         "starmodels_frame": o.starmodels_frame, "seconds": round(o.seconds, 3),
                         "notes": o.notes})
            print(f"{o.outcome:8s} {o.compiles:3d} {o.seconds:6.2f}s  {case.id}: {o.error_type} "
                  f"{o.message[:90]}")
    counts = {k: sum(r["outcome"] == k for r in rows) for k in ("clear", "deep", "silent", "accepted")}
    late = [r["id"] for r in rows if r["outcome"] in ("clear", "deep") and r["compiles"]]
    total_s = time.perf_counter() - t_start
    figures = {"counts": counts, "n_cases": len(rows), "refused_after_compilation": late,
               "not_clear": [r["id"] for r in rows if r["outcome"] in ("deep", "silent")],
               "seconds": round(total_s, 1), "setup_seconds": round(setup_s, 1), "cases": rows}
    met = counts["deep"] == 0 and counts["silent"] == 0 and not (set(late) - RUNTIME_ONLY)
    targets = {"bad_inputs": {"target": TARGET, "met": met,
                              "value": f"{counts['deep']} deep, {counts['silent']} silent, "
                                       f"{len(late)} refused after compilation"}}
    path = write_record("bad_inputs", figures, targets=targets, table=table(rows, counts),
                        command="python -m benchmarks.bad_inputs")
    print(json.dumps(counts), f"{total_s:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
