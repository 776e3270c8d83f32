"""A real deployment run: Prefect server + process work pool + `prefect deploy` from deploy/prefect.yaml +
a worker, then `prefect deployment run train-eval-export/smoke --watch` (tiny model swapped in by --param)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"Prefect server at {url} not healthy after {timeout}s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Stop a process we started, by PID: SIGINT first (the worker needs it), then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_real_deployment_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    arts = tmp_path / "artifacts"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "BELLM_HOME": str(tmp_path / "home"),
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    started: list[subprocess.Popen] = []

    def spawn(name: str, *args: str) -> subprocess.Popen:
        out = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [str(BIN / "prefect"), *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(p)
        return p

    def prefect(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )

    try:
        spawn("server", "server", "start", "--host", "127.0.0.1", "--port", str(port))
        wait_healthy(api)
        r = prefect("work-pool", "create", "bellm-local", "--type", "process")
        assert r.returncode == 0, r.stdout + r.stderr
        r = prefect("--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml")
        assert r.returncode == 0, r.stdout + r.stderr
        spawn("worker", "worker", "start", "--pool", "bellm-local")
        overrides = {
            "model.source": str(tiny_model_dir),
            "artifacts_dir": str(arts),
            "train.max_steps": 1,
            "train.warmup_steps": 0,
            "lora.layers": None,
            "train.batch_size": 4,
            "data.max_eval_pairs": 16,
            "eval.baseline": False,
        }
        r = prefect(
            "deployment",
            "run",
            "train-eval-export/smoke",
            "--watch",
            "--watch-timeout",
            "600",
            "--param",
            f"overrides={json.dumps(overrides)}",
            timeout=660,
        )
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "Completed" in out, out + (logs / "worker.log").read_text()[-4000:]
        runs = sorted((arts / "runs").iterdir())
        assert len(runs) == 1
        man = json.loads((runs[0] / "manifest.json").read_text())
        assert man["status"] == "passed" and man["profile"] == "smoke"
        assert (runs[0] / "onnx" / "fp32" / "model.onnx").is_file()
        assert not (arts / "champion").exists()  # smoke runs never become champion
        for profile in ("quick", "standard", "paper", "smoke"):
            name = f"train-eval-export/{profile}"
            r = prefect("deployment", "inspect", name)  # exits non-zero for a deployment that does not exist
            assert r.returncode == 0, name + ": " + r.stdout + r.stderr
    finally:
        for p in reversed(started):
            stop(p)
