"""`bellm export` on the tiny model: success output, clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bellm.cli import _register, app

_register()
runner = CliRunner()


def test_export_cli(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    res = runner.invoke(app, ["export", "--model", str(tiny_model_dir), "-k", "1", "--pooling", "mean",
                              "--variants", "fp32", "--no-sts-gate", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "fp32: published" in res.output
    c = json.loads((out / "fp32" / "bellm.json").read_text())
    assert c["bidirectional_layers"] == 1 and c["pooling"] == "mean"


def test_export_cli_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    base = ["export", "--model", str(tiny_model_dir), "--output", str(tmp_path / "x"), "--no-sts-gate"]
    res = runner.invoke(app, [*base, "--variants", "fp32,bf8"])
    assert res.exit_code == 2 and "unknown variant" in res.output
    res = runner.invoke(app, [*base, "--attention-op", "sdpa"])
    assert res.exit_code == 2 and "--attention-op" in res.output
    res = runner.invoke(app, [*base, "-k", "9"])
    assert res.exit_code == 2 and "bidirectional_layers" in res.output
    res = runner.invoke(app, [*base, "--adapter", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "adapter directory not found" in res.output
    assert not (tmp_path / "x").exists()
