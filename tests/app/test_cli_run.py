"""`bellm run` process behaviour: a SIGTERM (a scheduler or `kill` stopping the main job) must not leave
Prefect's ephemeral API server running behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A flow in a process prepared as `bellm run` prepares it (prefect_env), so it starts Prefect's ephemeral
# server (a uvicorn child process) and then waits to be killed.
SCRIPT = """
import time
from bellm_app.flows.cli_run import prefect_env
prefect_env()
from prefect import flow

@flow
def wait_to_be_killed() -> None:
    print("READY", flush=True)
    time.sleep(600)

wait_to_be_killed()
"""


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_job_stops_the_ephemeral_prefect_server(tmp_path: Path, sig: int) -> None:
    """SIGTERM: Prefect stops its server on the way out. SIGKILL (issue 29 item 5): nothing runs in the job,
    so the server (started under bellm.parentwatch) must notice its parent is gone and stop itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(BELLM_HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the server is up once the flow body runs
            log.append(line)
            if line.strip() == "READY":
                break
        assert log and log[-1].strip() == "READY", "".join(log[-30:])
        servers = _children(proc.pid)
        assert servers, "no ephemeral server process was started"
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [p for p in servers if _alive(p)]
        assert not left, f"processes {left} outlived the killed job"
        assert proc.returncode == (128 + signal.SIGTERM if sig == signal.SIGTERM else -signal.SIGKILL)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # never leak a server, whatever the outcome
        except ProcessLookupError:
            pass
        proc.wait()
