"""A `bellm train` process killed with SIGKILL and restarted ends with the same adapter as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.processes  # kills and restarts `bellm train` processes


def bellm_cmd(model_dir: Path, out: Path) -> list[str]:
    exe = Path(sys.executable).with_name("bellm")
    base = [str(exe)] if exe.is_file() else [sys.executable, "-c", "from bellm.cli import main; main()"]
    return base + [
        "train", "--profile", "smoke", "--output", str(out), "--no-progress",
        "--set", f"model.source={model_dir}",
        "--set", "train.max_steps=60", "--set", "train.checkpoint_every=8", "--set", "train.batch_size=4",
        "--set", "train.warmup_steps=5", "--set", "train.schedule=cosine",
        "--set", "train.grad_accum=2",
        "--set", "lora.dropout=0.1",  # dropout RNG must replay exactly too
    ]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def log_steps(out: Path) -> int:
    p = out / "train_log.jsonl"
    return len(p.read_text().splitlines()) if p.is_file() else 0


def test_kill_9_and_resume_gives_the_same_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(bellm_cmd(tiny_model_dir, ref), env=env(), check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(bellm_cmd(tiny_model_dir, killed), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    # Kill between checkpoints: after the step-8 checkpoint and a few more logged steps.
    while not ((killed / "checkpoints" / "step-00000008").is_dir() and log_steps(killed) >= 11):
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "adapter").exists(), "the run was not interrupted"
    steps_at_kill = log_steps(killed)
    assert steps_at_kill < 60

    res = subprocess.run(bellm_cmd(tiny_model_dir, killed), env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resumed from checkpoint" in res.stderr and "resumed from step" in res.stdout

    a = load_file(str(ref / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert diff <= 1e-6, f"max abs diff {diff}"

    # the log is whole again: one line per step, the same losses
    la = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (killed / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lb] == list(range(1, 61))
    assert [x["loss"] for x in la] == pytest.approx([x["loss"] for x in lb], abs=1e-6)
    meta = json.loads((killed / "adapter" / "bellm.json").read_text())
    assert meta["steps"] == 60


def test_a_run_killed_before_its_first_checkpoint_restarts_its_log(tiny_model_dir: Path, tmp_path: Path) -> None:
    """With no checkpoint to resume from, training starts at step 1 and so must the log: the killed run's
    lines used to stay, so the log held steps 1..n twice and the sweep's training seconds counted them twice."""
    from bellm.profiles import build_config
    from bellm.training import train

    out = tmp_path / "run"
    out.mkdir()
    stale = [json.dumps({"step": s, "loss": 1.0, "step_s": 100.0}) for s in (1, 2, 3)]
    (out / "train_log.jsonl").write_text("\n".join(stale) + "\n")  # what a kill at step 3 leaves
    cfg = build_config("smoke", {"model": {"source": str(tiny_model_dir)},
                                 "train": {"progress": False, "max_steps": 2, "checkpoint_every": 2}})
    train(cfg, out)
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2] and all(x["step_s"] < 100 for x in lines)
