"""Where the shared test and benchmark data live: ``../shared/data/<name>`` next to the repository or
``/work/shared/data/<name>``, overridable by an environment variable or an explicit folder."""

from __future__ import annotations

import os
from pathlib import Path

_REPO_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
_WORK_SHARED = Path("/work/shared/data")


def find_data_dir(name: str, env: str, data_dir=None, what: str = "", holds: str = "") -> Path:
    """The folder of shared data set ``name``: ``data_dir``, else env ``env``, else the first of
    ``../shared/data/<name>`` next to the repository and ``/work/shared/data/<name>`` that exists;
    FileNotFoundError naming the folder(s) tried (``what`` names the data, ``holds`` what it holds)."""
    if data_dir is None:
        value = os.environ.get(env)
        candidates = [Path(value)] if value else [_REPO_SHARED / name, _WORK_SHARED / name]
    else:
        candidates = [Path(data_dir)]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"{what or name} data folder not found: {', '.join(map(str, candidates))} (pass "
                            f"data_dir= or set {env} to the folder holding {holds or 'the data'})")
