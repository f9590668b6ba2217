"""Warm starts: compiled programs are reused within a process and found in the persistent cache across
processes, whatever PYTHONHASHSEED is."""

import json
import os
import subprocess
import sys

import starmodels as sm

from .conftest import SMALL_TRUTH, small_model

_CHILD = """
import json, sys
import jax
import starmodels as sm
from starmodels.startup import compile_cache_dir
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
from tests.conftest import SMALL_TRUTH, small_model
events = {"hits": 0, "misses": 0}
def listener(event, **_):
    if event.endswith("cache_hits"): events["hits"] += 1
    if event.endswith("cache_misses"): events["misses"] += 1
jax.monitoring.register_event_listener(listener)
model = small_model()
data = model.simulate(SMALL_TRUTH, seed=3)
means = {}
for method, options in json.loads(sys.argv[1]).items():
    post = sm.fit(model, data, method=method, seed=0, progress=False, **options)
    means[method] = float(post.mean()["source.log_flux"])
print(json.dumps({"cache": str(compile_cache_dir()), **events, "means": means,
                  "set_order": list({"loc", "scale"})}))
"""
FITS = {"nuts": {"num_chains": 2, "num_warmup": 40, "num_draws": 40, "map_starts": 4},
        "svi": {"guide": "meanfield", "num_steps": 200, "chunk": 100, "num_restarts": 1, "init": "map"}}


def _run(fits, cache, hashseed):
    env = {**os.environ, "STARMODELS_COMPILE_CACHE": str(cache), "PYTHONHASHSEED": str(hashseed),
           "STARMODELS_HOST_DEVICES": "2"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(fits)], env=env, capture_output=True,
                         text=True, cwd=root)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_keys_do_not_depend_on_the_hash_seed(tmp_path):
    """A process with another PYTHONHASHSEED (other set orders) finds every program of a NUTS fit (MAP
    search, Laplace, chains) and an SVI fit in the cache the first process filled."""
    first = _run(FITS, tmp_path / "cache", 1)
    second = _run(FITS, tmp_path / "cache", 6)
    assert first["set_order"] != second["set_order"]  # the hash seeds really order sets differently
    assert first["cache"] == str(tmp_path / "cache") and first["misses"] > 0
    assert second["misses"] == 0 and second["hits"] >= first["misses"]
    assert second["means"] == first["means"]  # same seed, same numbers, across processes


def test_cache_can_be_turned_off():
    out = _run({"svi": {**FITS["svi"], "init": "prior"}}, "off", 0)
    assert out["cache"] == "None" and out["hits"] == out["misses"] == 0


def test_a_second_fit_on_new_data_and_priors_compiles_nothing():
    """Same structure, other data and other prior values: the compiled runner is reused (counted)."""
    import jax
    import numpyro.distributions as dist

    model = small_model()
    data = model.simulate(SMALL_TRUTH, seed=3)
    opts = dict(num_chains=2, num_warmup=50, num_draws=50, progress=False)
    sm.fit(model, data, seed=0, **opts)
    wider = model.with_priors({"source.x": dist.Normal(0.0, 0.08)})
    other = wider.simulate(SMALL_TRUTH, seed=4)
    compiles = []
    listener = lambda event, duration, **_: compiles.append(event) if "backend_compile" in event else None  # noqa: E731
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        second = sm.fit(wider, other, seed=1, **opts)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert second.meta["compiled_runner"] == "reused"
    assert compiles == []
