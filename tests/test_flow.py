"""The train-eval-export flow end to end on a tiny random model, under Prefect's test harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect")


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def tiny_overrides(tiny_model_dir: Path, artifacts: Path, **extra: Any) -> dict[str, Any]:
    return {
        "model.source": str(tiny_model_dir),
        "artifacts_dir": str(artifacts),
        "data.max_train_pairs": 16,
        "data.max_train_triplets": 16,
        "data.max_eval_pairs": 24,
        "train.max_steps": 2,
        "train.warmup_steps": 0,
        "lora.layers": None,
        "train.batch_size": 4,
        "eval.baseline": False,
        "eval.gates.min_task": {},  # a tiny random model cannot pass the quick profile's STS gate
        "export.variants": ["fp32"],
        **extra,
    }


def task_states(flow_run_id: Any) -> dict[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, list[str]] = {}
    for tr in runs:
        out.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr.state.name)
    return out


def test_flow_completes_registers_and_caches(harness, tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from bellm.registry import champion, list_runs
    from flows.train_eval_export import train_eval_export

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    arts = tmp_path / "artifacts"
    ov = tiny_overrides(tiny_model_dir, arts)
    state = train_eval_export(profile="quick", overrides=ov, return_state=True)
    assert state.is_completed(), state
    result = state.result()
    run_dir = Path(result["run_dir"])
    man = json.loads((run_dir / "manifest.json").read_text())
    assert man["status"] == "passed" and man["profile"] == "quick"
    assert set(man["data"]) and all(len(v) == 64 for v in man["data"].values())
    assert {"train", "evaluate-gate", "export"} <= set(man["timings"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"trained", "zero_shot", "onnx"} <= set(metrics)
    assert set(metrics["onnx"]) == {"fp32"} and metrics["onnx"]["fp32"]["tasks"]
    assert (run_dir / "report.md").is_file() and list(run_dir.glob("*.png"))
    assert (run_dir / "adapter" / "bellm.json").is_file()
    onnx = run_dir / "onnx" / "fp32"
    assert {"model.onnx", "tokenizer.json", "bellm.json", "README.md"} <= {p.name for p in onnx.iterdir()}
    from huggingface_hub import ModelCard

    from bellm.export.card import HUB_DATASETS

    card = ModelCard.load(onnx / "README.md").data  # the Hub card carries this run's STS results
    want = {HUB_DATASETS[t]: round(v["spearman"], 2) for t, v in metrics["trained"]["tasks"].items()
            if t in HUB_DATASETS and v["spearman"] is not None}
    assert want and {r.dataset_type: r.metric_value for r in card.eval_results} == want
    assert card.model_name == f"bellm-{run_dir.name}-fp32"
    adapter_cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(tiny_model_dir)  # the declared source, not a cache path
    assert man["published_variants"] == ["fp32"]
    assert champion(arts).id == run_dir.name

    # Same inputs again: training and evaluation are cache hits (by task state), a new run is registered.
    state2 = train_eval_export(profile="quick", overrides=ov, return_state=True)
    assert state2.is_completed()
    states = task_states(state2.state_details.flow_run_id)
    assert states["train"] == ["Cached"], states
    assert set(states["evaluate"]) == {"Cached"}, states
    assert len(list_runs(arts)) == 2


def test_failed_gate_fails_run_and_publishes_nothing(
    harness, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from bellm.registry import champion, list_runs
    from flows.train_eval_export import train_eval_export

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    arts = tmp_path / "artifacts"
    ov = tiny_overrides(tiny_model_dir, arts, **{"eval.gates.min_task": {"stsb_dev": 99.0}})
    state = train_eval_export(profile="quick", overrides=ov, return_state=True)
    assert state.is_failed()
    (run,) = list_runs(arts)
    man = run.manifest
    assert man["status"] == "failed" and "stsb_dev" in man["error"] and "99" in man["error"]
    assert not (run.dir / "onnx").exists()
    assert champion(arts) is None
    states = task_states(state.state_details.flow_run_id)
    assert states["enforce-gates"] == ["Failed"], states  # not retried: deterministic
    assert "export" not in states
