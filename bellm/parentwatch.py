"""Child processes that die with their parent, and a sweep for those that outlived it.

`python -m bellm.parentwatch MODULE [ARGS...]` runs `python -m MODULE ARGS...` in this process, plus a
daemon thread that sends it SIGTERM (then, 10 s later, exits hard) as soon as the parent process is gone
(`os.getppid()` changes when the parent dies and the child is re-parented). `bellm run` starts Prefect's
ephemeral API server (≈ 230 MB, a TCP port) this way, so a `kill -9` of the run no longer orphans it.
(`prctl(PR_SET_PDEATHSIG)` would fire when the *thread* that spawned the child exits, which need not be the
whole parent: a poll is what "the parent is gone" means.)

`owner_env()` is the environment entry that names the owner (`BELLM_WATCH_OWNER=<pid>:<start time>`);
`stop_orphans()` finds this user's processes that carry it with a dead owner (the watchdog could not act,
e.g. it was SIGSTOPped, or an older bellm started them) and stops them: `bellm runs gc` calls it.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bellm.io import pid_alive

OWNER_ENV = "BELLM_WATCH_OWNER"
POLL_S = 0.5


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed child stays a zombie until its parent reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return pid_alive(pid) if not Path("/proc").is_dir() else False


def owner_env(pid: int | None = None) -> dict[str, str]:
    """`{OWNER_ENV: "<pid>:<start time>"}` naming `pid` (default: this process) as a child's owner."""
    pid = os.getpid() if pid is None else pid
    return {OWNER_ENV: f"{pid}:{_start_time(pid) or ''}"}


def owner_alive(value: str) -> bool:
    """Whether the owner named by an OWNER_ENV value still runs (same pid *and* start time)."""
    pid_s, _, started = value.partition(":")
    if not pid_s.isdigit() or not pid_alive(int(pid_s)):
        return False
    return not started or _start_time(int(pid_s)) in (None, started)


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop first (uvicorn shuts down on SIGTERM)
    time.sleep(10.0)
    os._exit(1)


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit("usage: python -m bellm.parentwatch MODULE [ARGS...]")
    threading.Thread(target=_watch, args=(os.getppid(),), name="bellm-parentwatch", daemon=True).start()
    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def legacy_ephemeral_server(pid: int, env: dict[str, str]) -> bool:
    """An ephemeral Prefect server of this bellm home started before `bellm.parentwatch` (no owner recorded)
    whose parent is gone (re-parented to init): `bellm runs gc` stops it."""
    from bellm.paths import bellm_home

    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return (b"prefect.server.api.server:create_app" in cmd and env.get("PREFECT__SERVER_EPHEMERAL") == "1"
            and env.get("PREFECT_HOME") == str(bellm_home() / "prefect") and ppid == 1)


def stop_orphans(also: Callable[[int, dict[str, str]], bool] | None = None, wait_s: float = 10.0) -> list[int]:
    """SIGTERM (then SIGKILL after `wait_s`) this user's processes whose OWNER_ENV names a dead owner, and
    those `also(pid, environ)` accepts. Linux `/proc` only (elsewhere: nothing). Returns the pids stopped."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    me = os.getpid()
    found: list[int] = []
    for d in proc.iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        env = _environ(int(d.name))
        owner = env.get(OWNER_ENV)
        if (owner is not None and not owner_alive(owner)) or (owner is None and also and also(int(d.name), env)):
            found.append(int(d.name))
    for pid in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    while any(running(p) for p in found) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in found:
        if running(pid):
            os.kill(pid, signal.SIGKILL)
    return found


if __name__ == "__main__":
    main(sys.argv[1:])
