"""ONNX export of the real embedded model (slow): fp32 parity with PyTorch and the graph check on all 30 layers.
Its own file so that a parallel test run (`pytest -n 2 --dist loadfile`) can run it beside the tiny-model
export tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bellm.encoder import load_encoder
from bellm.export.api import export_encoder


@pytest.mark.slow
def test_real_model_fp32_parity(tmp_path: Path) -> None:
    enc = load_encoder("smollm2-135m", bidirectional_layers=2)
    result = export_encoder(enc, tmp_path / "real", ["fp32"], sts_gate=False)
    fp32 = result.variants["fp32"]
    assert fp32.published and fp32.parity["min_cosine"] >= 0.99999 and fp32.parity["max_abs_diff"] <= 1e-4
    report = fp32.graph_check  # check_graph, run by the export on the file it published (not run twice)
    assert report["ok"] and report["k_found"] == 2 and len(report["layers"]) == 30
    assert report["empirical"] == "ok" and all(layer["padding_invisible"] for layer in report["layers"])
