"""Atomic results: a killed write leaves the old file or none; folders are checked against a manifest."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from starmodels.atomic import ResultError, atomic_path, check_manifest, write_manifest
from starmodels.results import Posterior

_WRITER = """
import sys, time
import arviz as az
import numpy as np
from starmodels.results import Posterior
real = az.InferenceData.to_netcdf
def slow(self, path, *a, **k):
    out = real(self, path, *a, **k)   # the new content is on disk under the temporary name...
    print("written", flush=True)
    time.sleep(60)                     # ...and the process is killed before it is renamed
    return out
az.InferenceData.to_netcdf = slow
post = Posterior(idata=az.from_dict(posterior={"a": np.full((1, 50), 2.0)}), meta={"method": "new"})
post.to_netcdf(sys.argv[1])
"""


def _post(value, method):
    import arviz as az

    return Posterior(idata=az.from_dict(posterior={"a": np.full((1, 50), value)}), meta={"method": method})


@pytest.mark.parametrize("existing", [True, False])
def test_a_killed_write_leaves_the_old_result_or_none(tmp_path, existing):
    path = tmp_path / "post.nc"
    if existing:
        _post(1.0, "old").to_netcdf(path)
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    if existing:
        back = Posterior.from_netcdf(path)
        assert back.method == "old" and float(back.draws()["a"].mean()) == 1.0
    else:
        assert not path.exists()
        with pytest.raises(ResultError, match="no result file"):
            Posterior.from_netcdf(path)


def test_a_failed_write_removes_its_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_truncated_netcdf_is_a_clear_error(tmp_path):
    path = _post(1.0, "nuts").to_netcdf(tmp_path / "p.nc")
    data = path.read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 2])
    with pytest.raises(ResultError, match="not a complete starmodels result"):
        Posterior.from_netcdf(tmp_path / "cut.nc")


def test_result_folder_is_checked_against_its_manifest(tmp_path):
    post = _post(3.0, "svi")
    post.save(tmp_path / "run")
    assert Posterior.load(tmp_path / "run").method == "svi"
    (tmp_path / "run" / "summary.csv").write_text("edited\n")
    with pytest.raises(ResultError, match="summary.csv does not match"):
        Posterior.load(tmp_path / "run")
    post.save(tmp_path / "run2")
    (tmp_path / "run2" / "manifest.json").unlink()
    with pytest.raises(ResultError, match="no manifest.json"):
        Posterior.load(tmp_path / "run2")
    post.save(tmp_path / "run3")
    (tmp_path / "run3" / "posterior.nc").unlink()
    with pytest.raises(ResultError, match="posterior.nc is missing"):
        check_manifest(tmp_path / "run3")
    with pytest.raises(ResultError, match="does not exist"):
        write_manifest(tmp_path / "run3", ["nope.png"])
