"""NUTS: recovery of the truth, convergence, parallel chains, reproducibility, bad input."""

import logging
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from numpyro.infer import Predictive

import starmodels as sm
from starmodels.forward import DataError
from starmodels.infer.devices import choose_chain_method

from .conftest import SMALL_TRUTH


def test_small_fit_converges_and_covers_truth(small_fit):
    table = small_fit.summary()
    assert (table["r_hat"] <= 1.01).all(), table
    assert small_fit.divergences == 0
    check = small_fit.check_truth(SMALL_TRUTH, prob=0.997)
    assert check["inside"].all(), check


def test_two_chains_really_ran_in_parallel_on_two_devices(small_fit):
    m = small_fit.meta
    assert m["devices"] == 2 and m["chain_method"] == "parallel"
    assert m["devices_used"] == 2  # the final chain states live on two devices (pmap)


def test_chain_method_is_decided_and_never_silently_sequential(caplog):
    assert choose_chain_method(2) == "parallel"
    with caplog.at_level(logging.WARNING, logger="starmodels"):
        assert choose_chain_method(4) == "vectorized"
    assert "vectorized" in caplog.text
    with pytest.raises(RuntimeError, match="needs 4 devices"):
        choose_chain_method(4, "parallel")


def test_host_device_count_is_set_before_jax_starts():
    code = "import starmodels, jax; print(jax.local_device_count())"
    env = {**os.environ, "STARMODELS_HOST_DEVICES": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "3"


def test_same_seed_same_numbers(small):
    model, data = small
    run = lambda seed: sm.fit(model, data, num_chains=1, num_warmup=30, num_draws=30, seed=seed,
                              progress=False).draws()["source.x"]
    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_x64_and_pointwise_log_likelihood(small):
    model, data = small
    post = sm.fit(model, data, num_chains=1, num_warmup=30, num_draws=20, seed=1, progress=False, x64=True,
                  log_likelihood=True, init="prior")
    assert post.draws()["source.x"].dtype == np.float64
    ll = post.idata.log_likelihood["obs"]
    assert ll.shape == (1, 20) + model.shape and np.isfinite(ll.values).all()
    assert "log_likelihood" not in sm.fit(model, data, num_chains=1, num_warmup=5, num_draws=5, seed=1,
                                          progress=False, init="prior").idata.groups()


def test_fit_rejects_bad_data_and_options_before_sampling(small):
    model, data = small
    bad = data.copy()
    bad[2, 3] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        sm.fit(model, bad, num_chains=1, num_warmup=5, num_draws=5)
    with pytest.raises(DataError, match="integer"):
        sm.fit(model, data + 0.3, num_chains=1, num_warmup=5, num_draws=5)
    with pytest.raises(ValueError, match="method"):
        sm.fit(model, data, method="gibbs")
    with pytest.raises(ValueError, match="init"):
        sm.fit(model, data, num_chains=1, num_warmup=5, num_draws=5, init="median")


def test_binary_star_recovers_all_13_parameters(binary):
    """The zoo model's 13 parameters: identified (posterior sd well below prior sd),
    truth inside the 99.7% interval, r_hat <= 1.01, no divergences."""
    data, truth = binary.simulate(seed=0)
    post = sm.fit(binary.model, data, num_chains=2, num_warmup=300, num_draws=500, seed=0, progress=False,
                  truth=truth)
    table = post.summary()
    assert len(table) == 13
    assert (table["r_hat"] <= 1.01).all(), table["r_hat"]
    assert post.divergences == 0
    check = post.check_truth(truth, prob=0.997)
    assert check["inside"].all(), check
    prior = Predictive(binary.model.sample_params, num_samples=4000)(jax.random.PRNGKey(0))
    for name, sd in table["sd"].items():
        base, _, idx = name.partition("[")
        draws = np.asarray(prior[base])
        if idx:
            draws = draws[:, binary.model.labels()[base].index(int(idx[:-1]))]
        assert sd < 0.2 * draws.std(), (name, sd, draws.std())
