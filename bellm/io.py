"""Small IO helpers: atomic writes and hashing. Every file bellm publishes goes through here,
so a crash never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_dir(path: str | os.PathLike[str]) -> str:
    """Hash of a directory's files (relative names + contents), order-independent of the filesystem."""
    root = Path(path)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


TMP_SUFFIX = ".tmp"


PID_MAX = 2**31 - 1  # pid_t is a C int: larger values cannot name a process (os.kill raises OverflowError)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie or another user's counts as alive).

    Only 1..PID_MAX name one process: 0 and negative numbers name process groups (kill would succeed),
    and a bool or an out-of-range number read from a corrupt manifest must not block the registry."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to `dest`; on success rename it over `dest` (file or directory).

    The temp directory is unique (`.<name>.<pid>.<random>.tmp`) and a replaced directory is first moved
    *into* it, so leftovers of a killed process (found by `remove_leftovers`) can never block a later
    publish. A directory replacement is two renames: a kill between them leaves `dest` missing and the
    old copy inside the temp directory, never a half-written `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dest.parent))
    target = tmp / dest.name
    try:
        yield target
        if dest.is_dir() and not dest.is_symlink():
            os.replace(dest, tmp / ".replaced")
        os.replace(target, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(parent: str | os.PathLike[str], stale_s: float = 86400.0) -> list[Path]:
    """Delete temp directories under `parent` (recursively) left by killed `atomic_path` writers: those
    whose pid is dead (or older than `stale_s`, in case the pid was recycled), plus the `.X.old-<pid>`
    directories of older bellm versions. Returns what was removed."""
    root = Path(parent)
    if not root.is_dir():
        return []
    removed: list[Path] = []
    now = time.time()
    for d in sorted(root.rglob(".*"), key=lambda q: len(q.parts), reverse=True):
        if not d.is_dir() or d.is_symlink():
            continue
        parts = d.name.split(".")
        if d.name.endswith(TMP_SUFFIX) and len(parts) >= 5 and parts[-3].isdigit():
            alive = pid_alive(int(parts[-3])) and now - d.stat().st_mtime < stale_s
        elif d.name.endswith(TMP_SUFFIX) or ".old-" in d.name:
            alive = False  # legacy names without a pid
        else:
            continue
        if alive:
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def write_text_atomic(dest: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def write_json_atomic(dest: str | os.PathLike[str], obj: Any) -> Path:
    return write_text_atomic(dest, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json_object(path: str | os.PathLike[str], what: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON object in `path` (a config file, a sweep spec), or `error("<path>: ...")` saying why not:
    unreadable, not UTF-8, not JSON (with line and column), or not an object."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: cannot read {what} ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: {what} must be a JSON object, got {type(doc).__name__}")
    return doc


def write_bytes_atomic(dest: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)
