"""Two processes (torchrun, gloo on CPU) follow the loss curve of one process at the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.processes  # torchrun process groups


def run_bellm(model_dir: Path, out: Path, batch: int, nproc: int) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("bellm")
    args = [
        "train", "--profile", "smoke", "--output", str(out), "--no-progress",
        "--set", f"model.source={model_dir}", "--set", "train.max_steps=8", "--set", "train.checkpoint_every=4",
        "--set", f"train.batch_size={batch}", "--set", f"train.nproc_per_node={nproc}",
        "--set", "loss.gather_across_ranks=true",
        "--set", "lora.dropout=0.0",  # dropout masks differ per rank by design; compare the math
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def losses(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None
                    or not Path(sys.executable).with_name("bellm").is_file(), reason="needs the venv's scripts")
def test_two_process_ddp_matches_one_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    single = run_bellm(tiny_model_dir, tmp_path / "one", batch=8, nproc=1)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = run_bellm(tiny_model_dir, tmp_path / "two", batch=4, nproc=2)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert "torch.distributed.run" in ddp.stderr  # it relaunched itself under torchrun

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [x["kind"] for x in one] == [x["kind"] for x in two]
    assert [x["tokens"] for x in one] == [x["tokens"] for x in two]  # same global batches
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-4)
    # gathered in-batch negatives span both ranks: the triplet steps' ibn term is the global one
    assert any(x["kind"] == "triplets" for x in one)
    wa = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "adapter" / "adapter_model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
