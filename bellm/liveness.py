"""Is the process that owns a `running` run still alive? Owner records and a heartbeat.

A run's manifest records its owner (`pid`, `host`, the process start time) and a heartbeat. On the
owner's host the answer is exact: the pid must exist *and* have the same start time (a recycled pid does
not count). From another host only the heartbeat can tell: a run whose heartbeat is older than
`STALE_AFTER_S` is taken as dead. The flow keeps a heartbeat thread while a run is open.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bellm.io import pid_alive

STALE_AFTER_S = 900.0  # 15 min without a heartbeat from another host = dead
HEARTBEAT_EVERY_S = 30.0
HEARTBEAT_FILE = ".heartbeat"


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux `/proc`), None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 counted after "pid (comm)"


def owner_record() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": process_start(pid)}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def last_heartbeat(run_dir: Path, manifest: dict[str, Any]) -> float | None:
    """Newest of the manifest's `heartbeat` and the heartbeat file's mtime (epoch seconds)."""
    stamps = []
    hb = manifest.get("heartbeat")
    if isinstance(hb, str):
        try:
            stamps.append(datetime.fromisoformat(hb).timestamp())
        except ValueError:
            pass
    try:
        stamps.append((run_dir / HEARTBEAT_FILE).stat().st_mtime)
    except OSError:
        pass
    return max(stamps) if stamps else None


def owner_dead(run_dir: Path, manifest: dict[str, Any], now: float | None = None) -> str | None:
    """Why the owner of this running run is dead, or None if it may be alive."""
    owner = manifest.get("owner")
    now = time.time() if now is None else now
    if isinstance(owner, dict) and owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        pid = owner["pid"]  # pid_alive: 0, negatives, bools and out-of-range numbers are no process
        if not pid_alive(pid):
            return f"its process {pid} on {owner['host']} is gone (killed?)"
        started = owner.get("started")
        if started is not None and process_start(pid) not in (None, started):
            return f"its process {pid} on {owner['host']} is gone (the pid now belongs to another process)"
        return None
    beat = last_heartbeat(run_dir, manifest)
    if beat is None:
        return "it records no owner and no heartbeat"
    if now - beat > STALE_AFTER_S:
        return f"no heartbeat for {int(now - beat)} s (owner {owner})"
    return None


class Heartbeat:
    """A daemon thread touching `<run_dir>/.heartbeat` every `every` seconds until `stop()`."""

    _live: dict[str, Heartbeat] = {}

    def __init__(self, run_dir: Path, every: float = HEARTBEAT_EVERY_S) -> None:
        self.path = Path(run_dir) / HEARTBEAT_FILE
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"bellm-heartbeat-{Path(run_dir).name}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.path.touch()
            except OSError:
                pass  # the run directory may be gone; the owner check still works on this host
            self._stop.wait(self.every)

    @classmethod
    def start(cls, run_dir: str | Path, every: float = HEARTBEAT_EVERY_S) -> Heartbeat:
        key = str(Path(run_dir).resolve())
        if key not in cls._live:
            hb = cls(Path(run_dir), every)
            hb._thread.start()
            cls._live[key] = hb
        return cls._live[key]

    @classmethod
    def stop(cls, run_dir: str | Path) -> None:
        hb = cls._live.pop(str(Path(run_dir).resolve()), None)
        if hb is not None:
            hb._stop.set()
