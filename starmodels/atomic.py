"""Atomic files and result folders with a manifest.

Every file the library writes goes through :func:`atomic_path`: it is
written under a temporary name in the same folder, flushed to disk and
renamed into place, so a reader sees the old file or the complete new one,
never half of one. A result folder ends with ``manifest.json`` (written
last, also atomically), listing each file with its size and SHA-256;
:func:`check_manifest` refuses a folder whose manifest is missing or whose
files do not match it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

MANIFEST = "manifest.json"
_FORMAT = "starmodels-result-1"


class ResultError(ValueError):
    """A result file or folder is missing, incomplete, or does not match its manifest."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename.

    The temporary name keeps ``path``'s suffix (writers that infer the format
    from it still work) and starts with a dot. If the block raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ResultError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp)
    try:
        tmp.unlink()  # writers that refuse to overwrite get a fresh name
        yield tmp
        if not tmp.exists():
            raise ResultError(f"writing {path}: nothing was written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_writable_folder(folder) -> Path:
    """``folder`` as a Path if it is (or can be made) a writable folder; ``ResultError`` naming why not.

    Creates it if missing. Call before long work so a bad ``--out`` fails at once.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ResultError(f"output folder {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ResultError(f"cannot write to folder {folder}: {err.strerror or err}") from None
    return folder


def write_manifest(folder, files: Iterable[str], meta: dict | None = None) -> Path:
    """Write ``manifest.json`` (last) listing ``files`` of ``folder`` with their sizes and SHA-256."""
    folder = Path(folder)
    entries = {}
    for name in files:
        p = folder / name
        if not p.is_file():
            raise ResultError(f"manifest: {p} does not exist")
        entries[name] = {"bytes": p.stat().st_size, "sha256": _digest(p)}
    body = {"format": _FORMAT, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": entries,
            **(meta or {})}
    return write_text(folder / MANIFEST, json.dumps(body, indent=1, sort_keys=True) + "\n")


def check_manifest(folder) -> dict:
    """The manifest of result folder ``folder`` after checking every file against it; ``ResultError`` else."""
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not folder.is_dir():
        raise ResultError(f"{folder} is not a result folder")
    if not mpath.is_file():
        raise ResultError(f"{folder} has no {MANIFEST}: the result was not completely written "
                          "(interrupted?) or is not a starmodels result folder")
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise ResultError(f"{mpath} is not a valid starmodels manifest") from None
    problems = []
    for name, entry in files.items():
        p = folder / name
        if not p.is_file():
            problems.append(f"{name} is missing")
        elif p.stat().st_size != entry.get("bytes") or _digest(p) != entry.get("sha256"):
            problems.append(f"{name} does not match the manifest (changed or incomplete)")
    if problems:
        raise ResultError(f"result folder {folder}: " + "; ".join(problems))
    return manifest
