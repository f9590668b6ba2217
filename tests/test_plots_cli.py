"""Corner plots, residual panels and the ``starmodels`` command."""

import numpy as np
import pandas as pd

from starmodels.cli import main
from starmodels.plots import corner, residuals
from starmodels.results import Posterior


def test_corner_overlays_posteriors_with_truth(small_fit, tmp_path):
    fig = corner({"run A": small_fit, "run B": small_fit}, path=tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 10_000
    legend = [t.get_text().strip() for ax in fig.axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    legend += [t.get_text().strip() for leg in fig.legends for t in leg.get_texts()]
    assert {"run A", "run B"} <= set(legend)


def test_residual_panel(small, small_fit, tmp_path):
    model, data = small
    fig = residuals(model, data, small_fit.mean(), path=tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5_000
    assert "chi2/pixel" in fig._suptitle.get_text()


def test_cli_list(capsys):
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "binary_star" in listed and "star_flux" in listed


def test_cli_fit_writes_summary_posterior_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["fit", "binary_star", "--out", str(out), "--warmup", "40", "--samples", "40",
                 "--no-progress", "--seed", "2"]) == 0
    assert {p.name for p in out.iterdir()} == {"summary.csv", "posterior.nc", "corner.png",
                                               "residuals.png", "manifest.json"}
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert len(table) == 13 and "optics.zernike[4]" in table.index
    post = Posterior.load(out)  # checked against the manifest
    assert post.meta["seed"] == 2 and np.isfinite(post.draws()["optics.zernike"]).all()
    assert "r_hat" in capsys.readouterr().out


def test_cli_grid_fit_of_a_plate_model(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["fit", "star_flux", "--method", "grid", "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert len(table) == 16 and "r_hat" not in table.columns  # one flux per image; no MCMC columns
    post = Posterior.from_netcdf(out / "posterior.nc")
    assert post.meta["method"] == "grid" and post.idata.observed_data["obs"].dims == ("image", "y", "x")
    assert np.allclose(post.summary()["mean"].values, post.meta["grid"]["mean"]["source.flux"])
    assert "exact grid posterior" in capsys.readouterr().out


def test_corner_shows_every_parameter_with_literal_names(tmp_path):
    """Vector elements get their labels, names print as they are (no TeX subscripts), and a site name
    selects all its elements."""
    import arviz as az

    rng = np.random.default_rng(0)
    draws = {"source.log_flux": rng.normal(size=(1, 300)), "optics.zernike": rng.normal(size=(1, 300, 3))}
    post = Posterior(idata=az.from_dict(posterior=draws), meta={"method": "nuts",
                                                               "labels": {"optics.zernike": [4, 5, 6]}})
    fig = corner(post, path=tmp_path / "all.png")
    texts = [t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) if t]
    shown = " ".join(texts)
    for name in ("source.log_flux", "optics.zernike[4]", "optics.zernike[5]", "optics.zernike[6]"):
        assert name in shown, name
    assert "$" not in shown  # no mathtext: log_flux is not rendered as log subscript flux
    some = corner(post, params=["optics.zernike"])
    labels = {ax.get_xlabel().strip() for ax in some.axes if ax.get_xlabel()}
    assert labels == {"optics.zernike[4]", "optics.zernike[5]", "optics.zernike[6]"}
