"""Every bad option is refused before any work, with a message naming the option and the allowed range.

"Before any work" is checked with a counter of XLA compilations (a JAX
monitoring listener), not a clock: a refused call compiles nothing.
"""

import math
from contextlib import contextmanager

import jax
import numpy as np
import numpyro.distributions as dist
import pytest

import starmodels as sm
from starmodels.cli import main
from starmodels.infer.registry import OptionError

from .conftest import SMALL_TRUTH, small_model

_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextmanager
def no_compilation():
    """Fail if JAX compiles anything inside the block."""
    count = []

    def listener(event, duration, **_):
        if event == _COMPILE:
            count.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert not count, f"{len(count)} XLA compilation(s) before the error"


@pytest.fixture(scope="module")
def case():
    sm.methods()  # import every runner module before counting
    model = small_model()
    return model, model.simulate(SMALL_TRUTH, seed=3)


BAD = [
    ("nuts", {"target_accept": 0.0}, "target_accept must be a number strictly between 0 and 1"),
    ("nuts", {"target_accept": 1.0}, "target_accept"),
    ("nuts", {"target_accept": math.nan}, "target_accept"),
    ("nuts", {"num_chains": 0}, "num_chains must be an integer >= 1"),
    ("nuts", {"num_chains": 2.5}, "num_chains"),
    ("nuts", {"num_chains": True}, "num_chains"),
    ("nuts", {"num_draws": 0}, "num_draws must be an integer >= 1"),
    ("nuts", {"num_warmup": -5}, "num_warmup"),
    ("nuts", {"max_tree_depth": 0}, "max_tree_depth must be an integer from 1 to 15"),
    ("nuts", {"init": "median"}, "init must be one of"),
    ("nuts", {"chain_method": "magic"}, "chain_method"),
    ("nuts", {"seed": -1}, "seed must be a non-negative integer"),
    ("nuts", {"seed": 1.5}, "seed"),
    ("nuts", {"seed": "0"}, "seed"),
    ("nuts", {"seed": None}, "seed"),
    ("nuts", {"lr": 0.1}, "unknown option 'lr' for method 'nuts'"),
    ("nuts", {"num_draw": 10}, "did you mean 'num_draws'"),
    ("nuts", {"samples": 10, "num_draws": 10}, "same option"),
    ("svi", {"lr": math.nan}, "lr must be a finite number > 0"),
    ("svi", {"lr": 0.0}, "lr"),
    ("svi", {"lr": -1e-3}, "lr"),
    ("svi", {"lr": math.inf}, "lr"),
    ("svi", {"guide": "gaussian"}, "guide must be one of"),
    ("svi", {"num_steps": 0}, "num_steps"),
    ("svi", {"num_restarts": 0}, "num_restarts"),
    ("svi", {"num_particles": 0}, "num_particles"),
    ("svi", {"num_chains": 2}, "did you mean 'num_restarts'"),
    ("svi", {"warm_start": "fit.nc"}, "warm_start must be a Posterior"),
    ("grid", {"num_points": 0}, "num_points"),
    ("grid", {"refine": -1}, "refine"),
    ("grid", {"num_draws": 0}, "num_draws"),
    ("amortized", {}, "needs amortizer="),
    ("amortized", {"amortizer": "enc.eqx"}, "amortizer must be a trained Amortizer"),
]


@pytest.mark.parametrize("method,options,message", BAD, ids=[f"{m}-{sorted(o)}" for m, o, _ in BAD])
def test_bad_option_is_refused_before_any_compilation(case, method, options, message):
    model, data = case
    with no_compilation(), pytest.raises(OptionError, match=message):
        sm.fit(model, data, method=method, progress=False, **options)


def test_several_problems_are_reported_at_once(case):
    model, data = case
    with no_compilation(), pytest.raises(OptionError) as err:
        sm.fit(model, data, num_chains=0, target_accept=2.0, num_draws=-1)
    assert all(k in str(err.value) for k in ("num_chains", "target_accept", "num_draws"))


def test_unknown_method_bad_flags_and_truth(case):
    model, data = case
    with no_compilation():
        with pytest.raises(ValueError, match="method must be one of"):
            sm.fit(model, data, method="gibbs")
        with pytest.raises(ValueError, match="x64 must be True or False"):
            sm.fit(model, data, x64="yes")
        with pytest.raises(ValueError, match="not sampled sites"):
            sm.fit(model, data, truth={"source.z": 1.0})
        with pytest.raises(TypeError, match="not a starmodels model"):
            sm.fit(object(), data)


@pytest.mark.parametrize("prior,message", [
    (lambda: dist.Uniform(1.0, 0.0), "empty support"),
    (lambda: dist.Uniform(0.0, 0.0), "empty support"),
    (lambda: dist.Normal(0.0, -1.0), "scale"),
    (lambda: dist.Normal(math.nan, 1.0), "not finite|loc"),
    (lambda: dist.LogNormal(0.0, 0.0), "scale"),
    (lambda: dist.HalfNormal(-2.0), "scale"),
])
def test_priors_with_empty_support_or_bad_parameters_are_refused(prior, message):
    """numpyro refuses some at construction; the rest are refused when given to a model."""
    model = small_model()
    with no_compilation(), pytest.raises(ValueError, match=message):
        model.with_priors({"source.x": prior()})


def test_card_prior_spec_errors_name_the_site():
    from starmodels.priors import prior_from_spec

    with pytest.raises(ValueError, match=r"'source.x'.*empty support"):
        prior_from_spec({"dist": "Uniform", "low": 2.0, "high": 1.0}, "source.x")
    with pytest.raises(ValueError, match="numbers"):
        prior_from_spec({"dist": "Normal", "loc": "zero", "scale": 1.0}, "source.x")


def test_train_amortized_checks_its_options_first():
    z = sm.zoo.load("star_flux")
    images = np.zeros((8, 15, 15))
    with no_compilation():
        with pytest.raises(ValueError, match="lr must be a finite number"):
            sm.train_amortized(z.model, images, lr=math.nan)
        with pytest.raises(ValueError, match="num_steps must be an integer"):
            sm.train_amortized(z.model, images, num_steps=0)
        with pytest.raises(ValueError, match="seed"):
            sm.train_amortized(z.model, images, seed=-3)


def test_cli_refuses_bad_out_and_options_before_fitting(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(sm, "fit", lambda *a, **k: calls.append(1))
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["fit", "binary_star", "--out", str(afile), "--no-progress"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["fit", "binary_star", "--out", str(tmp_path / "o"), "--num-draws", "0"]) == 2
    assert "num_draws must be an integer >= 1" in capsys.readouterr().err
    assert main(["fit", "binary_star", "--out", str(tmp_path / "o"), "--method", "svi",
                 "--guide", "nope"]) == 2
    assert "guide must be one of" in capsys.readouterr().err
    assert main(["fit", "no_such_model", "--out", str(tmp_path / "o")]) == 2
    assert "no zoo model" in capsys.readouterr().err
    assert not calls


def test_bad_data_values_are_refused_with_the_reason(case):
    model, data = case
    bad = {
        "complex-valued": data + 1j,
        "array of numbers": np.array([["a"] * 12] * 12),
        "array of numbers, got tuple": (data, SMALL_TRUTH),
        "float32 range": np.where(np.arange(144).reshape(12, 12) == 5, 1e40, data),
    }
    for message, value in bad.items():
        with no_compilation(), pytest.raises(sm.DataError, match=message):
            sm.fit(model, value, progress=False)


def test_structure_problems_are_refused_before_any_work(case):
    from starmodels.infer.grid import GridError

    model, data = case
    with no_compilation():
        with pytest.raises(ValueError, match=r"takes values of shape \(\); the new value has shape \(2,\)"):
            model.with_fixed({"source.x": [0.1, 0.2]})
        with pytest.raises(ValueError, match=r"truth: source.x has shape \(3,\)"):
            sm.fit(model, data, truth={"source.x": [1.0, 2.0, 3.0]})
        with pytest.raises(ValueError, match="source.y is not finite"):
            sm.fit(model, data, truth={"source.y": math.nan})
        with pytest.raises(TypeError, match="truth must be a dict"):
            sm.fit(model, data, truth=1.0)
        with pytest.raises(TypeError, match="model instance, not the class|got the class"):
            sm.fit(sm.ForwardModel, data)
        with pytest.raises(GridError, match="1 or 2 free parameters"):
            sm.fit(model, data, method="grid")
        with pytest.raises(OptionError, match="chain_method='parallel' needs num_chains"):
            sm.fit(model, data, num_chains=3, chain_method="parallel")


def test_a_diverging_svi_fit_is_an_error_not_nan_draws(case):
    from starmodels.infer.registry import FitError

    model, data = case
    with pytest.raises(FitError, match="lower lr"):
        sm.fit(model, data, method="svi", lr=1e8, num_steps=100, chunk=50, num_restarts=1, init="prior",
               progress=False)
