"""One record format for every benchmark: command, versions, machine, git commit, figures, targets.

``write_record(name, figures, targets=..., table=...)`` writes
``benchmarks/results/<name>.json`` (everything) and ``<name>.md`` (the table
plus the provenance), atomically.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from starmodels.atomic import write_text
from starmodels.infer.fit import versions

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    """CPU count, platform and load average of this machine."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return {"cpus": os.cpu_count(), "cpu": model, "platform": platform.platform(),
            "load_average": list(os.getloadavg())}


def git_commit() -> str:
    """The repository's HEAD commit (with ``+dirty`` if the work tree has changes)."""
    root = Path(__file__).parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_record(name: str, figures: dict, *, targets: dict | None = None, table: str = "",
                 command: str | None = None) -> Path:
    """Write the JSON + Markdown record of one benchmark run; return the JSON path.

    ``targets`` maps a figure name to ``{"target": text, "met": bool}``.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name, "command": command or " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git_commit": git_commit(),
        "versions": versions(), "machine": machine(), "figures": figures, "targets": targets or {},
    }
    path = RESULTS / f"{name}.json"
    write_text(path, json.dumps(record, indent=2, default=float) + "\n")
    lines = [f"# {name}", "", f"`{record['command']}`", "", table.strip(), ""]
    if targets:
        lines += ["| target | value | met |", "|---|---|---|"]
        lines += [f"| {t['target']} | {t.get('value', '')} | {'yes' if t['met'] else 'NO'} |"
                  for t in targets.values()]
        lines.append("")
    m = record["machine"]
    lines += [f"Commit {record['git_commit']}, {record['date']}; {m['cpus']} CPUs ({m['cpu']}), load "
              f"average {m['load_average'][0]:.2f}; " + ", ".join(f"{k} {v}" for k, v in
                                                                  record["versions"].items())]
    write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")
    return path
