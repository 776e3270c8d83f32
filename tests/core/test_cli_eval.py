"""`bellm eval`: exit 0 when gates pass, 1 naming the failed checks, 2 on bad input; writes a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bellm.cli import _register, app
from bellm.cli.eval import load_champion, parse_min_task
from bellm.errors import InputError

_register()
runner = CliRunner()


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))


def _eval(tiny: Path, *args: str):
    base = ["eval", "--model", str(tiny), "-k", "2", "--pooling", "mean", "--max-length", "32", "--max-pairs", "10"]
    return runner.invoke(app, [*base, *args])


def test_eval_writes_report_and_passes_lenient_gate(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    r = _eval(tiny_model_dir, "--suite", "gate", "--min-task", "stsb_dev=-100", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert "STS-B dev" in r.output and "all gates passed" in r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained"]["tasks"]["stsb_dev"]["n"] == 10
    assert metrics["gates"]["passed"] is True
    assert (out / "stsb_dev_scatter.png").is_file() and (out / "report.md").is_file()


def test_failed_gate_exits_1_and_names_the_check(tiny_model_dir: Path, tmp_path: Path) -> None:
    champ = tmp_path / "champ.json"
    champ.write_text(json.dumps({"trained": {"tasks": {"stsb_dev": {"spearman": 99.0}}, "avg": 99.0, "max_pairs": 10}}))
    r = _eval(tiny_model_dir, "--min-avg", "99.5", "--champion", str(champ), "--max-regression", "0.5")
    assert r.exit_code == 1, r.output
    assert "min_avg" in r.output and ">= 99.50 FAILED" in r.output
    assert "max_regression[avg]" in r.output and "champion 99.00" in r.output


def test_bad_input_exits_2(tiny_model_dir: Path) -> None:
    r = _eval(tiny_model_dir, "--min-task", "stsb70")
    assert r.exit_code == 2 and "TASK=SPEARMAN" in r.output
    r = _eval(tiny_model_dir, "--suite", "missing.tsv")
    assert r.exit_code == 2 and "missing.tsv" in r.output


def test_parse_min_task_and_load_champion(tmp_path: Path) -> None:
    assert parse_min_task(["stsb=70", " sickr = 65.5"]) == {"stsb": 70.0, "sickr": 65.5}
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"trained": {"tasks": {}, "avg": 1.0}, "zero_shot": {}}))
    assert load_champion(str(run)) == {"tasks": {}, "avg": 1.0}
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ValueError, match="neither"):
        load_champion(str(tmp_path / "x.json"))
    with pytest.raises(InputError, match="no such file"):
        load_champion(str(tmp_path / "nope.json"))
