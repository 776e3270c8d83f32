from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bellm.io import atomic_path, write_json_atomic
from bellm.profiles import build_config
from bellm.registry import (
    RegistryError,
    champion,
    champion_result,
    gc,
    get_run,
    list_runs,
    mark_dead_runs,
    new_run,
    promote,
    setting_of,
    update_manifest,
)

GATED = {"eval": {"gates": {"min_task": {"stsb_dev": 60.0}, "max_regression": 1.0}}}


def passed_run(root: Path, avg: float, profile: str = "quick", config: dict[str, Any] | None = None,
               stsb_dev: float | None = None):
    """A passed run of the default setting (unless `config` says otherwise) with metrics; its dev score (what
    promotion decides on) is `avg` unless given."""
    stsb_dev = avg if stsb_dev is None else stsb_dev
    cfg = build_config(profile, config if config is not None else GATED).model_dump(mode="json")
    run = new_run(root, profile, cfg)
    tasks = {"sts12": {"spearman": avg}, "stsb": {"spearman": avg}}
    write_json_atomic(run.dir / "metrics.json", {"trained": {"avg": avg, "max_pairs": None, "tasks": tasks},
                                                 "gate": {"tasks": {"stsb_dev": {"spearman": stsb_dev}}}})
    update_manifest(run, status="passed")
    return run


def _cli():
    from bellm.cli import _register, app

    _register()
    return app


def test_run_lifecycle_and_champion(tmp_path: Path) -> None:
    run = new_run(tmp_path, "quick", build_config("quick", GATED).model_dump(mode="json"))
    assert run.manifest["status"] == "running" and run.dir.parent == tmp_path / "runs"
    assert run.manifest["owner"]["pid"] == os.getpid() and run.manifest["heartbeat"]
    with pytest.raises(RegistryError, match="only passed"):
        promote(run.id, tmp_path)
    update_manifest(run, status="passed", timings={"train": 1.0})
    update_manifest(run, timings={"eval": 2.0})
    assert run.manifest["timings"] == {"train": 1.0, "eval": 2.0}
    write_json_atomic(run.dir / "metrics.json", {"trained": {"avg": 70.0, "tasks": {}},
                                                 "gate": {"tasks": {"stsb_dev": {"spearman": 71.0}}}})
    promote(run.id, tmp_path)
    assert champion(tmp_path).id == run.id
    assert (tmp_path / "champion").read_text().strip() == run.id  # the contract file of the default setting
    assert champion_result(tmp_path)["avg"] == 70.0
    assert run.manifest["promotion"]["check"]["passed"] is True
    assert [r.id for r in list_runs(tmp_path)] == [run.id]
    with pytest.raises(RegistryError):
        update_manifest(run, status="weird")
    with pytest.raises(RegistryError, match="no run"):
        get_run("nope", tmp_path)


def test_smoke_runs_never_become_champion(tmp_path: Path) -> None:
    run = new_run(tmp_path, "smoke", {})
    update_manifest(run, status="passed")
    with pytest.raises(RegistryError, match="smoke"):
        promote(run.id, tmp_path)
    assert champion(tmp_path) is None


def test_promotion_needs_an_absolute_gate(tmp_path: Path) -> None:
    # The `paper` profile had no gates, and `--set eval.gates.min_task={}` removed quick's minimum.
    no_min = passed_run(tmp_path, 70.0, config={"eval.gates.min_task": {}})
    with pytest.raises(RegistryError, match="no absolute quality gate"):
        promote(no_min.id, tmp_path)
    no_reg = passed_run(tmp_path, 70.0, config={"eval.gates.max_regression": None})
    with pytest.raises(RegistryError, match="no regression limit"):
        promote(no_reg.id, tmp_path)
    assert build_config("paper").eval.gates.min_task  # every promotable profile gates
    below = passed_run(tmp_path, 70.0, stsb_dev=50.0)  # recorded `passed`, but under its own minimum
    with pytest.raises(RegistryError, match=r"min_task\[stsb_dev\]"):
        promote(below.id, tmp_path)
    assert champion(tmp_path) is None


def test_promotion_rechecks_regression_against_the_current_champion(tmp_path: Path) -> None:
    """Lost update: B and C both passed against the old champion A; B is promoted first, then C (worse than
    B by more than max_regression) must be refused, not silently replace B."""
    a = passed_run(tmp_path, 70.0)
    b = passed_run(tmp_path, 75.0)
    c = passed_run(tmp_path, 72.0)
    promote(a.id, tmp_path)
    promote(b.id, tmp_path)
    with pytest.raises(RegistryError, match="max_regression"):
        promote(c.id, tmp_path)
    assert champion(tmp_path).id == b.id


def _promote_quietly(run_id: str, root: str, start: Any) -> None:
    start.wait()
    try:
        promote(run_id, root)
    except RegistryError:
        pass


def test_concurrent_promoters_keep_the_better_run(tmp_path: Path) -> None:
    a = passed_run(tmp_path, 70.0)
    promote(a.id, tmp_path)
    b, c = passed_run(tmp_path, 75.0), passed_run(tmp_path, 72.0)
    ctx = mp.get_context("spawn")
    for _ in range(2):
        (tmp_path / "champion").write_text(a.id + "\n")
        start = ctx.Event()
        procs = [ctx.Process(target=_promote_quietly, args=(r.id, str(tmp_path), start)) for r in (c, b)]
        for p in procs:
            p.start()
        start.set()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        assert champion(tmp_path).id == b.id


def test_champion_per_setting(tmp_path: Path) -> None:
    """A smoke-sized `quick` run (capped eval pairs) no longer takes the default setting's champion."""
    full = passed_run(tmp_path, 70.0)
    promote(full.id, tmp_path)
    small_cfg = {**GATED, "data": {"max_eval_pairs": 48}}
    small = passed_run(tmp_path, 80.0, config=small_cfg)
    promote(small.id, tmp_path)
    assert champion(tmp_path).id == full.id
    setting = setting_of(build_config("quick", small_cfg).model_dump(mode="json"))
    assert champion(tmp_path, setting).id == small.id
    assert list((tmp_path / "champions").iterdir())


def test_unreadable_champion_is_an_error_not_a_pass(tmp_path: Path) -> None:
    a = passed_run(tmp_path, 70.0)
    promote(a.id, tmp_path)
    (a.dir / "metrics.json").unlink()
    with pytest.raises(RegistryError, match="metrics.json"):
        champion_result(tmp_path)
    (tmp_path / "champion").write_text("20990101T000000Z-000000\n")
    with pytest.raises(RegistryError, match="cannot be read"):
        champion_result(tmp_path)


@pytest.mark.parametrize("bad", ["../../x", "..", "a/b", "/etc", ""])
def test_run_ids_cannot_walk_out_of_the_registry(tmp_path: Path, bad: str) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text(json.dumps({"status": "passed", "profile": "quick"}))
    with pytest.raises(RegistryError, match="invalid run id"):
        get_run(bad, tmp_path / "reg")
    with pytest.raises(RegistryError, match="invalid run id"):
        promote(bad, tmp_path / "reg", force=True, reason="x")
    r = CliRunner().invoke(_cli(), ["runs", "show", bad, "--artifacts", str(tmp_path / "reg")])
    assert r.exit_code == 2 and "invalid run id" in r.output


def test_forcing_a_failed_run_needs_a_recorded_reason(tmp_path: Path) -> None:
    run = new_run(tmp_path, "quick", {})
    update_manifest(run, status="failed")
    with pytest.raises(RegistryError, match="reason"):
        promote(run.id, tmp_path, force=True)
    r = CliRunner().invoke(_cli(), ["runs", "promote", run.id, "--force", "--artifacts", str(tmp_path)])
    assert r.exit_code == 2 and "reason" in r.output
    r = CliRunner().invoke(_cli(), ["runs", "promote", run.id, "--force", "--reason", "hotfix, gates re-run by hand",
                                    "--artifacts", str(tmp_path)])
    assert r.exit_code == 0, r.output
    promo = run.manifest["promotion"]
    assert promo["forced"] and promo["reason"] == "hotfix, gates re-run by hand"


def test_list_flags_corrupt_manifests_and_dangling_champion(tmp_path: Path) -> None:
    good = passed_run(tmp_path, 70.0)
    bad = new_run(tmp_path, "quick", {})
    (bad.dir / "manifest.json").write_text("{not json")
    (tmp_path / "champion").write_text("20990101T000000Z-000000\n")
    r = CliRunner().invoke(_cli(), ["runs", "list", "--artifacts", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert good.id in r.output and bad.id in r.output and "UNREADABLE" in r.output
    assert "dangling" in r.output
    r = CliRunner().invoke(_cli(), ["runs", "show", bad.id, "--artifacts", str(tmp_path)])
    assert r.exit_code == 2 and "unreadable manifest" in r.output


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_runs_of_dead_processes_are_marked_interrupted(tmp_path: Path) -> None:
    live, dead, remote = (new_run(tmp_path, "quick", {}) for _ in range(3))
    update_manifest(dead, owner={"pid": _dead_pid(), "started": None})
    (dead.dir / "onnx" / "fp32").mkdir(parents=True)
    update_manifest(remote, owner={"host": "elsewhere", "pid": 1}, heartbeat="2000-01-01T00:00:00+00:00")
    marked = {r.id for r, _ in mark_dead_runs(tmp_path)}
    assert marked == {dead.id, remote.id}
    assert live.manifest["status"] == "running"
    assert dead.manifest["status"] == "interrupted" and "gone" in dead.manifest["error"]
    assert not (dead.dir / "onnx").exists()
    r = CliRunner().invoke(_cli(), ["runs", "list", "--artifacts", str(tmp_path)])
    assert "interrupted" in r.output


def test_gc_removes_leftovers_of_killed_writers(tmp_path: Path) -> None:
    run = new_run(tmp_path, "quick", {})
    update_manifest(run, status="failed")
    (run.dir / "onnx" / "fp32").mkdir(parents=True)
    leftover = run.dir / f".onnx.{_dead_pid()}.abcd1234.tmp"
    legacy = run.dir / ".onnx.old-12345"
    mine = run.dir / f".onnx.{os.getpid()}.abcd1234.tmp"  # a live writer's temp dir is kept
    for d in (leftover, legacy, mine):
        (d / "x").mkdir(parents=True)
    done = gc(tmp_path)
    assert not leftover.exists() and not legacy.exists() and mine.exists()
    assert not (run.dir / "onnx").exists()
    assert str(leftover) in done["removed"]
    r = CliRunner().invoke(_cli(), ["runs", "gc", "--artifacts", str(tmp_path)])
    assert r.exit_code == 0, r.output


def test_publishing_is_robust_to_a_leftover_old_directory(tmp_path: Path) -> None:
    """A `.X.old-<pid>` left by a killed process whose pid is reused by us used to block the rename."""
    dest = tmp_path / "onnx"
    (dest / "fp32").mkdir(parents=True)
    stale = tmp_path / f".onnx.old-{os.getpid()}"
    (stale / "junk").mkdir(parents=True)
    with atomic_path(dest) as tmp:
        (tmp / "fp32").mkdir(parents=True)
        (tmp / "fp32" / "model.onnx").write_text("new")
    assert (dest / "fp32" / "model.onnx").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_runs_cli(tmp_path: Path) -> None:
    app = _cli()
    run = passed_run(tmp_path, 70.0)
    r = CliRunner().invoke(app, ["runs", "promote", run.id, "--artifacts", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["runs", "list", "--artifacts", str(tmp_path)])
    assert run.id in r.output and "champion" in r.output
    r = CliRunner().invoke(app, ["runs", "show", "champion", "--artifacts", str(tmp_path)])
    assert json.loads(r.output)["manifest"]["id"] == run.id
    r = CliRunner().invoke(app, ["runs", "show", "missing", "--artifacts", str(tmp_path)])
    assert r.exit_code == 2
