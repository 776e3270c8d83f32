"""The batch/padding-invariance gate: a variant whose embeddings depend on the batch is never published."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_helpers import SCORES, fixed_score, shared_export

from bellm.encoder import load_encoder
from bellm.export.api import export_encoder
from bellm.export.invariance import QUANTIZED_MAX_DIFF, InvarianceError, check_invariance
from bellm.export.parity import PARITY_SENTENCES
from bellm.export.variants import quantize_dynamic_int8
from bellm.runtime import OnnxEncoder
from bellm.tokenize import pad_batch


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    return shared_export(str(tiny_model_dir), str(tmp_path_factory.getbasetemp()))


def encodings(rt: OnnxEncoder, n: int = 17) -> list:
    from bellm.tokenize import encode_one

    return [encode_one(rt.tokenizer, rt.template, s, rt.max_length) for s in PARITY_SENTENCES[:n]]


def dynamic_int8(out: Path, dest: Path) -> OnnxEncoder:
    """The previous int8 variant (one activation scale per batch tensor), built beside the fp32 export."""
    dest.mkdir()
    for name in ("tokenizer.json", "bellm.json"):
        (dest / name).write_bytes((out / "fp32" / name).read_bytes())
    quantize_dynamic_int8(out / "fp32" / "model.onnx", dest / "model.onnx")
    return OnnxEncoder(dest, verify_model=False)  # the copied bellm.json names the fp32 model's sha256


def test_dynamic_int8_fails_the_gate(tiny_export, tmp_path: Path) -> None:
    out, _, _ = tiny_export
    rt = dynamic_int8(out, tmp_path / "dyn")
    with pytest.raises(InvarianceError, match="batch/padding dependent"):
        check_invariance(rt.run_batch, encodings(rt), QUANTIZED_MAX_DIFF, "dynamic int8")


def test_published_variants_pass_the_gate(tiny_export) -> None:
    out, _, result = tiny_export
    assert result.variants["fp32"].invariance["max_abs_diff"] <= 1e-4
    for name in ("int8", "fp16"):
        assert result.variants[name].invariance["max_abs_diff"] <= QUANTIZED_MAX_DIFF, name
        rt = OnnxEncoder(out / name)
        assert check_invariance(rt.run_batch, encodings(rt), QUANTIZED_MAX_DIFF, name).max_abs_diff <= 1e-3
    summary = json.loads((out / "export.json").read_text())
    assert summary["variants"]["int8"]["invariance"]["sentences"] == 17


def test_int8_is_bitwise_independent_of_padding_side_and_pad_id(tiny_export) -> None:
    """The graph re-lays every row out with its real tokens first, so left/right padding and the pad id
    reach the kernels identically: the quantised variant's rounding cannot differ."""
    out, _, _ = tiny_export
    rt = OnnxEncoder(out / "int8")
    encs = encodings(rt, 9)
    right = rt.run_batch(*pad_batch(encs, 0, "right"))
    for pad, side in ((0, "left"), (7, "left"), (31_337, "right")):
        np.testing.assert_array_equal(rt.run_batch(*pad_batch(encs, pad, side)), right)


def test_export_never_publishes_a_batch_dependent_variant(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import bellm.export.api as api

    monkeypatch.setattr(api, "quantize_int8", lambda src, dst, calibration: quantize_dynamic_int8(src, dst))
    monkeypatch.setattr(api, "INT8_MIN_COSINE", 0.0)  # let fidelity pass: the invariance gate must catch it
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2, max_length=24)
    result = export_encoder(enc, tmp_path / "x", ["fp32", "int8"], sts_gate=fixed_score(SCORES))
    assert result.published() == ["fp32"]
    assert not (tmp_path / "x" / "int8").exists()
    reason = json.loads((tmp_path / "x" / "export.json").read_text())["variants"]["int8"]["reason"]
    assert "batch/padding dependent" in reason


def test_needs_padding_to_prove_anything(tiny_export) -> None:
    out, _, _ = tiny_export
    rt = OnnxEncoder(out / "fp32")
    same = encodings(rt, 1) * 3
    with pytest.raises(ValueError, match="different token lengths"):
        check_invariance(rt.run_batch, same, 1e-4, "fp32")
