"""`keep_layers` (issue #11): a truncated encoder round-trips through the adapter's bellm.json, the ONNX export
(graph rewrite and checker see the truncated depth) and the runtime, within the parity gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bellm.cli import _register, app
from bellm.config import ConfigError
from bellm.export.parity import PARITY_SENTENCES
from bellm.profiles import build_config

_register()
runner = CliRunner()


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from bellm.training import train

    cfg = build_config("smoke", {"model": {"source": str(tiny_model_dir)}, "train": {"progress": False},
                                 "encoder": {"keep_layers": 3, "bidirectional_layers": 2, "pooling": "mean"}})
    return train(cfg, tmp_path_factory.mktemp("keep-run")).adapter_dir


def test_adapter_descriptor_records_it(adapter: Path) -> None:
    from bellm.contract import read_adapter_descriptor
    from bellm.training import load_trained_encoder

    desc = read_adapter_descriptor(adapter)
    assert (desc.keep_layers, desc.num_layers, desc.bidirectional_layers) == (3, 3, 2)
    enc = load_trained_encoder(adapter)
    assert enc.num_layers == 3 and enc.k == 2 and enc.config.keep_layers == 3


def test_export_and_runtime_parity(adapter: Path, tmp_path: Path) -> None:
    from bellm.export.api import export_encoder
    from bellm.export.check import check_graph
    from bellm.runtime import OnnxEncoder
    from bellm.training import load_trained_encoder

    enc = load_trained_encoder(adapter)
    result = export_encoder(enc, tmp_path / "x", ["fp32", "int8"], sts_gate=False)
    d = tmp_path / "x" / "fp32"
    c = json.loads((d / "bellm.json").read_text())
    assert (c["keep_layers"], c["num_layers"], c["bidirectional_layers"]) == (3, 3, 2)
    report = check_graph(d / "model.onnx")
    assert report.ok and len(report.layers) == 3 and report.k_found == 2
    parity = result.variants["fp32"].parity
    assert {(case["batch"], case["side"]) for case in parity["cases"]} >= {(1, "left"), (17, "right"), (32, "left")}
    assert parity["max_abs_diff"] <= 1e-4
    rt = OnnxEncoder(d)
    texts = list(PARITY_SENTENCES)
    for bs in (1, 3, 17):
        for side in ("right", "left"):
            got, ref = rt.encode(texts, batch_size=bs, padding_side=side), enc.encode(texts, batch_size=bs)
            assert np.abs(got - ref).max() <= 1e-4, (bs, side)
    assert "int8" in result.published()


def test_cli_reads_it_from_the_adapter(adapter: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("A man plays a guitar.\n")
    r = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "e.npy"), "--adapter", str(adapter),
                            "--keep-layers", "4"])
    assert r.exit_code == 2 and "keep_layers=4" in r.output, r.output
    r = runner.invoke(app, ["encode", str(src), "-o", str(tmp_path / "e.npy"), "--adapter", str(adapter)])
    assert r.exit_code == 0, r.output


def test_config_time_checks() -> None:
    with pytest.raises(ConfigError, match="keep_layers"):
        build_config("quick", ["encoder.keep_layers=2", "encoder.bidirectional_layers=3"])
    with pytest.raises(ConfigError, match="keep_layers"):
        build_config("quick", ["encoder.keep_layers=0"])
