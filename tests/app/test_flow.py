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
        "encoder.keep_layers": None,  # the quick profile keeps 28 layers of the embedded model; the tiny one has 4
        "encoder.bidirectional_layers": 2,  # and makes 8 bidirectional
        "train.batch_size": 4,
        "eval.baseline": False,
        "eval.gates.min_task": {},  # a tiny random model cannot pass the quick profile's STS gate
        "export.variants": ["fp32"],
        **extra,
    }


def task_states(flow_run_id: Any, timeout_s: float = 60.0) -> dict[str, list[str]]:
    """Each task's final state names in one flow run. Prefect 3 records task-run states from events that the
    server ingests asynchronously, so a task run read right after the flow returns may have no state yet
    (CI read `state=None` once): wait until every task run has reached a final state."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            settled = all(tr.state is not None and tr.state.is_final() for tr in runs)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    out: dict[str, list[str]] = {}
    for tr in runs:
        out.setdefault(tr.name.rsplit("-", 1)[0], []).append(tr.state.name if tr.state else "<no state>")
    return out


def _setting(ov: dict[str, Any]) -> dict[str, Any]:
    from bellm.profiles import build_config
    from bellm.registry import setting_of

    return setting_of(build_config("quick", ov).model_dump(mode="json"))


def test_flow_completes_registers_and_caches(harness, tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """With a gate that *can* fail a first run: the tiny model's own STS-B dev score decides. Just above it,
    the first run fails and nothing is promoted; at it, the run passes and becomes champion."""
    from bellm.registry import champion, list_runs
    from bellm_app.flows.train_eval_export import train_eval_export

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    arts = tmp_path / "artifacts"
    probe = tiny_overrides(tiny_model_dir, arts, **{"eval.gates.min_task": {"stsb_dev": 100.0}})
    assert train_eval_export(profile="quick", overrides=probe, return_state=True).is_failed()
    (failed,) = list_runs(arts)
    measured = float(failed.manifest["error"].split("min_task[stsb_dev]: ")[1].split(" ")[0])  # 2 decimals
    assert champion(arts, _setting(probe)) is None
    above = tiny_overrides(tiny_model_dir, arts, **{"eval.gates.min_task": {"stsb_dev": measured + 0.02}})
    assert train_eval_export(profile="quick", overrides=above, return_state=True).is_failed()
    assert champion(arts, _setting(above)) is None

    ov = tiny_overrides(tiny_model_dir, arts, **{"eval.gates.min_task": {"stsb_dev": measured - 0.02}})
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
    assert man["published_variants"] == ["fp32"]
    # The report describes what ships: the full suite ran through onnxruntime on the published fp32 file,
    # and the export came before it (issue 12).
    import hashlib

    assert metrics["trained"]["encoder"]["runtime"] == "onnxruntime"
    shipped_sha = hashlib.sha256((onnx / "model.onnx").read_bytes()).hexdigest()
    assert metrics["trained"]["encoder"]["model_sha256"] == shipped_sha
    steps = list(man["timings"])
    assert steps.index("export") < steps.index("evaluate-full")
    from bellm.precision import fastest_faithful_engine

    if fastest_faithful_engine() == "onnx":  # no native bf16 here: the zero-shot column ran on ORT fp32 too
        assert metrics["zero_shot"]["encoder"]["runtime"] == "onnxruntime" and "export-zero-shot" in steps
    assert champion(arts, _setting(ov)).id == run_dir.name and man["promotion"]["check"]["passed"]
    # Issue 26: every decision's data files are in the manifest with sha256, and none is a test split.
    from bellm.splits import is_test_split

    decisions = json.loads((run_dir / "manifest.json").read_text())["decisions"]
    assert {"gates", "export_variant_gate", "promotion"} <= set(decisions), decisions
    read = {f: sha for d in decisions.values() for f, sha in d["data_sha256"].items()}
    assert {"data/sts/stsb/dev.tsv", "data/sts/sickr/dev.tsv"} <= set(read), read
    assert all(len(sha) == 64 for sha in read.values()) and not [f for f in read if is_test_split(f)], read
    assert set(decisions["export_variant_gate"]["data_sha256"]) == set(decisions["gates"]["data_sha256"])
    assert any(is_test_split(f) for f in metrics["trained"]["data_sha256"])  # the report did read test splits

    # Same inputs again: training and evaluation are cache hits (by task state), a new run is registered.
    state2 = train_eval_export(profile="quick", overrides=ov, return_state=True)
    assert state2.is_completed()
    states = task_states(state2.state_details.flow_run_id)
    assert states["train"] == ["Cached"], states
    assert set(states["evaluate"]) == {"Cached"}, states
    assert len(list_runs(arts)) == 4

    # The cached adapter directory was deleted: the cached result must not be reused (it used to fail forever).
    import shutil

    # (The probe's failing gate stops the run after training and the gate evaluation: reaching the gate is
    # what the bug prevented, and the export and report were covered above.)
    shutil.rmtree(Path(man["training"]["log"]).parent / "adapter")
    before = {r.id for r in list_runs(arts)}
    state3 = train_eval_export(profile="quick", overrides=probe, return_state=True)
    assert state3.is_failed()
    assert task_states(state3.state_details.flow_run_id)["train"] == ["Completed"]
    (new,) = [r for r in list_runs(arts) if r.id not in before]
    assert "min_task[stsb_dev]" in new.manifest["error"], new.manifest["error"]  # the gate, not a missing adapter


def test_failed_gate_fails_run_and_publishes_nothing(
    harness, tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    from bellm.registry import champion, list_runs
    from bellm_app.flows.train_eval_export import train_eval_export

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


def test_cache_keys_cover_code_data_and_dtype(tmp_path: Path, monkeypatch) -> None:
    """A code fix, an edited eval file or another dtype must never be answered from a cached result."""
    import bellm.provenance
    import bellm_app.tasks.evaluate as ev
    from bellm.config import EncoderConfig
    from bellm.keys import train_key
    from bellm.profiles import build_config

    cfg = build_config("quick")
    key = train_key(cfg, {"a": "1"}, "base")
    pairs = tmp_path / "mine.tsv"
    pairs.write_text("score\tsentence1\tsentence2\n1\ta\tb\n2\tc\td\n")
    params = {"encoder": EncoderConfig(source="m"), "adapter": None, "dtype": "float32", "suite": [str(pairs)],
              "max_pairs": None, "model_key": "k"}
    ekey = ev._eval_key(None, params)
    assert ev._eval_key(None, {**params, "dtype": "bfloat16"}) != ekey
    assert ev._eval_key(None, {**params, "encoder": EncoderConfig(source="m", pooling="mean")}) != ekey
    pairs.write_text("score\tsentence1\tsentence2\n1\ta\tb\n5\tc\td\n")
    assert ev._eval_key(None, params) != ekey
    ekey = ev._eval_key(None, params)
    monkeypatch.setattr(bellm.provenance, "code_fingerprint", lambda modules=None: "fixed")
    assert train_key(cfg, {"a": "1"}, "base") != key
    assert ev._eval_key(None, params) != ekey


def test_train_cache_key_recomputes_when_the_adapter_is_gone(tmp_path: Path, monkeypatch) -> None:
    import bellm_app.tasks.train as tr
    from bellm.keys import train_dir, train_key
    from bellm.profiles import build_config
    from bellm.trial import TRAINED

    monkeypatch.setenv("BELLM_HOME", str(tmp_path))
    cfg = build_config("quick")
    params = {"cfg": cfg, "data_sha256": {"a": "1"}, "base_sha256": "b"}
    key = train_key(cfg, {"a": "1"}, "b")
    adapter = train_dir(cfg, {"a": "1"}, "b") / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter.parent / TRAINED).write_text("{}")
    assert tr._cache_key(None, params) == key
    (adapter / "adapter_config.json").unlink()
    assert tr._cache_key(None, params) != key
