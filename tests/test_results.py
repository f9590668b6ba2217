"""Posterior: summary table, NetCDF round trip, diagnostics."""

import numpy as np
import pandas as pd

from starmodels.diagnostics import warn_on_problems
from starmodels.results import Posterior


def test_summary_has_the_usual_columns(small_fit):
    table = small_fit.summary()
    for col in ("mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"):
        assert col in table.columns
    assert list(table.index) == ["source.x", "source.y", "source.log_flux"]


def test_netcdf_round_trip_keeps_everything(small_fit, tmp_path):
    path = small_fit.to_netcdf(tmp_path / "post.nc")
    back = Posterior.from_netcdf(path)
    for k, v in small_fit.draws().items():
        np.testing.assert_array_equal(back.draws()[k], v)
    for group in ("sample_stats", "observed_data"):
        a, b = getattr(small_fit.idata, group), getattr(back.idata, group)
        for k in a.data_vars:
            np.testing.assert_array_equal(a[k].values, b[k].values)
    assert back.meta == small_fit.meta
    pd.testing.assert_frame_equal(back.summary(), small_fit.summary())
    assert "log_likelihood" not in back.idata.groups()


def test_metadata_records_the_run(small_fit):
    m = small_fit.meta
    for key in ("method", "num_chains", "devices", "chain_method", "compile_seconds", "sampling_seconds",
                "run_seconds", "gradient_evals", "versions", "seed", "compile_cache"):
        assert key in m
    assert m["gradient_evals"] > m["gradient_evals_sampling"] > 0
    assert m["sampling_seconds"] > 0 and m["versions"]["numpyro"].startswith("0.22")


def test_problems_are_warned_about(caplog):
    table = pd.DataFrame({"r_hat": [1.0, 1.2], "ess_bulk": [500, 20]}, index=["a", "b"])
    msgs = warn_on_problems(table, divergences=3, draws=100)
    assert any("3 divergent" in m for m in msgs)
    assert any("r_hat" in m and "'b'" in m for m in msgs)
    assert any("ess_bulk" in m for m in msgs)


def test_summary_warns_on_r_hat_that_rounds_to_1_01(caplog):
    """Checks use unrounded r_hat: two chains offset by a little must still be flagged."""
    import arviz as az

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1000))
    x[1] += 0.22
    post = Posterior(idata=az.from_dict(posterior={"a": x}), meta={"method": "nuts"})
    table = post.summary()
    r = float(table.loc["a", "r_hat"])
    assert 1.01 < r < 1.03, r
    assert "r_hat > 1.01" in caplog.text
