"""Advisory file locks (POSIX `flock`): released by the kernel when the holder dies, even by `kill -9`,
so a crashed process never leaves a stale lock behind. The lock file records the holder's pid and host
for the error message only; it is never deleted (deleting a lock file races with its next holder).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from bellm.errors import BusyError


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float | None = 0.0, what: str = "") -> Iterator[Path]:
    """Hold an exclusive lock on `path` (created if missing) for the `with` block.

    `timeout`: 0 fails at once, None waits forever, else waits that many seconds; on failure raises
    `BusyError` naming the holder (pid@host) and `what` is locked.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise BusyError(
                        f"{what or p.parent} is in use by another bellm process ({_holder(p)}); "
                        f"wait for it to finish or use another directory (lock: {p})"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}@{socket.gethostname()}\n".encode())
        try:
            yield p
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
