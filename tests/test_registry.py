from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bellm.io import write_json_atomic
from bellm.registry import (
    RegistryError,
    champion,
    champion_result,
    get_run,
    list_runs,
    new_run,
    promote,
    update_manifest,
)


def test_run_lifecycle_and_champion(tmp_path: Path) -> None:
    run = new_run(tmp_path, "quick", {"a": 1})
    assert run.manifest["status"] == "running" and run.dir.parent == tmp_path / "runs"
    with pytest.raises(RegistryError, match="only passed"):
        promote(run.id, tmp_path)
    update_manifest(run, status="passed", timings={"train": 1.0})
    update_manifest(run, timings={"eval": 2.0})
    assert run.manifest["timings"] == {"train": 1.0, "eval": 2.0}
    write_json_atomic(run.dir / "metrics.json", {"trained": {"avg": 70.0, "tasks": {}}})
    promote(run.id, tmp_path)
    assert champion(tmp_path).id == run.id
    assert champion_result(tmp_path)["avg"] == 70.0
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


def test_runs_cli(tmp_path: Path) -> None:
    from bellm.cli import _register, app

    _register()
    run = new_run(tmp_path, "quick", {})
    update_manifest(run, status="passed")
    r = CliRunner().invoke(app, ["runs", "promote", run.id, "--artifacts", str(tmp_path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["runs", "list", "--artifacts", str(tmp_path)])
    assert run.id in r.output and "champion" in r.output
    r = CliRunner().invoke(app, ["runs", "show", "champion", "--artifacts", str(tmp_path)])
    assert json.loads(r.output)["manifest"]["id"] == run.id
    r = CliRunner().invoke(app, ["runs", "show", "missing", "--artifacts", str(tmp_path)])
    assert r.exit_code == 2
