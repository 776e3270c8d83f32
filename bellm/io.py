"""Small IO helpers: atomic writes and hashing. Every file bellm publishes goes through here,
so a crash never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import sys
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


AT_FDCWD, RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>
REPLACED = ".replaced"  # inside a temp directory: the old copy of a directory being replaced


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`). False where the kernel, libc or
    filesystem cannot (then nothing was changed); any other failure raises OSError."""
    if not sys.platform.startswith("linux"):
        return False
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path next to `dest`; on success rename it over `dest` (file or directory).

    The temp directory is unique (`.<name>.<pid>.<random>.tmp`). A directory is replaced by swapping the two
    in one step (`exchange`), so a kill at any moment leaves the old `dest` or the new one; the old copy then
    sits in the temp directory and is deleted with it. Where the swap is unavailable (not Linux, or a
    filesystem without it) the old directory is first moved to `<temp>/.replaced`, then the new one in: a
    kill between the two renames leaves `dest` missing and `remove_leftovers` moves the old copy back (it
    never deletes the only copy).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=TMP_SUFFIX, dir=dest.parent))
    target = tmp / dest.name
    try:
        yield target
        if dest.is_dir() and not dest.is_symlink() and target.exists():
            if not exchange(target, dest):
                os.replace(dest, tmp / REPLACED)
                os.replace(target, dest)
        else:
            os.replace(target, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")  # atomic_path's temp directories
_LEGACY_NAME = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")  # older bellm versions' replaced directories
_LEGACY_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # older bellm versions' temp directories (no pid, no old copy)


def remove_leftovers(parent: str | os.PathLike[str], stale_s: float = 86400.0) -> list[Path]:
    """Delete temp directories under `parent` (recursively) left by killed `atomic_path` writers: those
    whose pid is dead (or older than `stale_s`, in case the pid was recycled), plus the `.X.old-<pid>`
    directories of older bellm versions whose pid is dead. Never deletes the only copy: a killed writer's
    `.replaced` directory whose destination is missing is moved back to it, and an `.X.old-<pid>` is kept
    while `X` is missing. Never follows a symbolic link. Returns what was removed."""
    root = Path(parent)
    if not root.is_dir() or root.is_symlink():
        return []
    removed: list[Path] = []
    now = time.time()
    for d in sorted(_walk_hidden_dirs(root), key=lambda q: len(q.parts), reverse=True):
        if (m := _TMP_NAME.match(d.name)) is not None:
            if pid_alive(int(m["pid"])) and now - d.lstat().st_mtime < stale_s:
                continue
            old, dest = d / REPLACED, d.parent / m["name"]
            if old.is_dir() and not old.is_symlink() and not os.path.lexists(dest):
                os.rename(old, dest)  # killed between the fallback's two renames: the old copy goes back
        elif (m := _LEGACY_NAME.match(d.name)) is not None:
            if pid_alive(int(m["pid"])) or not os.path.lexists(d.parent / m["name"]):
                continue
        elif not _LEGACY_TMP.match(d.name):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _walk_hidden_dirs(root: Path) -> Iterator[Path]:
    """Every hidden directory under `root`, not descending into symbolic links."""
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        for name in dirnames:
            p = Path(dirpath) / name
            if name.startswith(".") and not p.is_symlink():
                yield p


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
