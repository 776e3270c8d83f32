"""ONNX export on tiny random decoders: graph structure, checker, parity, variants, gates, atomic publish."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from export_helpers import fixed_score, shared_export

from bellm.encoder import load_encoder
from bellm.export.api import export_encoder
from bellm.export.check import GraphCheckError, check_graph, expected_flags
from bellm.export.parity import PARITY_SENTENCES, ParityError
from bellm.runtime import OnnxEncoder

CONTRACT_KEYS = ("prompt", "bidirectional_layers", "num_layers", "pooling", "dim", "max_length", "variant", "opset",
                 "base_model_sha256", "adapter_sha256", "attention_op", "inputs", "outputs", "padding")


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path):
    return shared_export(str(tiny_model_dir), str(tmp_path_factory.getbasetemp()))


def attention_attrs(model_path: Path) -> list[tuple[str, dict]]:
    model = onnx.load(str(model_path))
    return [(n.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute})
            for n in model.graph.node if n.op_type in ("Attention", "MultiHeadAttention")]


def test_layout_and_contract(tiny_export) -> None:
    out, enc, result = tiny_export
    assert result.published() == ["fp32", "fp16", "int8"]
    summary = json.loads((out / "export.json").read_text())
    assert summary["published"] == ["fp32", "fp16", "int8"]
    for variant in ("fp32", "fp16", "int8"):
        d = out / variant
        assert {p.name for p in d.iterdir()} >= {"model.onnx", "tokenizer.json", "bellm.json", "README.md"}
        c = json.loads((d / "bellm.json").read_text())
        assert all(k in c for k in CONTRACT_KEYS)
        assert c["variant"] == variant and c["opset"] == 23 and c["bidirectional_layers"] == 2
        assert c["num_layers"] == 4 and c["dim"] == 64 and c["max_length"] == 24 and "{text}" in c["prompt"]
        assert c["inputs"] == ["input_ids", "attention_mask"] and c["outputs"] == ["sentence_embedding"]
        assert c["base_model_sha256"] == enc.describe()["base_model_sha256"]
    assert not list(out.parent.glob(".tiny.*"))  # no temporary directory left behind


def test_graph_io_and_fused_ops(tiny_export) -> None:
    out, _, _ = tiny_export
    model = onnx.load(str(out / "fp32" / "model.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in model.graph.output] == ["sentence_embedding"]
    for i in model.graph.input:
        assert i.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(d.dim_param for d in i.type.tensor_type.shape.dim)  # dynamic batch and seq
    ops = {n.op_type for n in model.graph.node}
    assert {"Attention", "RotaryEmbedding", "RMSNormalization", "ReduceL2"} <= ops
    assert not {"Softmax", "Trilu", "LessOrEqual"} & ops  # no unfused attention, no causal mask left
    attrs = attention_attrs(out / "fp32" / "model.onnx")
    assert [a["is_causal"] for _, a in attrs] == [1, 1, 0, 0]


def test_cpu_variants_run_attention_on_packed_heads(tiny_export) -> None:
    """fp32 and int8 (built from it) feed RoPE and Attention (B,S,H*D) tensors: no head split/merge transposes;
    fp16, the CUDA variant, keeps the 4-D layout its GPU numbers were measured with."""
    out, _, _ = tiny_export
    for variant, packed in (("fp32", True), ("int8", True), ("fp16", False)):
        model = onnx.load(str(out / variant / "model.onnx"))
        attrs = attention_attrs(out / variant / "model.onnx")
        assert all(("q_num_heads" in a) == packed for _, a in attrs), variant
        assert (not any(n.op_type == "Transpose" for n in model.graph.node)) == packed, variant


def test_checker_finds_k(tiny_export) -> None:
    out, _, _ = tiny_export
    for variant in ("fp32", "fp16", "int8"):
        report = check_graph(out / variant / "model.onnx")
        assert report.ok and report.k_found == 2 and report.empirical == "ok"
        assert [lyr.sees_future_measured for lyr in report.layers] == expected_flags(4, 2)
        assert all(lyr.padding_invisible for lyr in report.layers)


@pytest.mark.parametrize("wrong_k", [0, 1, 3, 4])
def test_checker_fails_on_wrong_contract(tiny_export, tmp_path: Path, wrong_k: int) -> None:
    out, _, _ = tiny_export
    c = json.loads((out / "fp32" / "bellm.json").read_text())
    c["bidirectional_layers"] = wrong_k
    bad = tmp_path / "bellm.json"
    bad.write_text(json.dumps(c))
    with pytest.raises(GraphCheckError, match="contract says"):
        check_graph(out / "fp32" / "model.onnx", bad)
    report = check_graph(out / "fp32" / "model.onnx", c, strict=False)
    assert not report.ok and report.k_found == 2


def test_checker_fails_on_wrong_layer_count(tiny_export) -> None:
    out, _, _ = tiny_export
    report = check_graph(out / "fp32" / "model.onnx", {"num_layers": 6, "bidirectional_layers": 2}, strict=False)
    assert any("fused attention nodes for 6 layers" in p for p in report.problems)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 3, 17, 32])
def test_parity_with_pytorch(tiny_export, side: str, batch_size: int) -> None:
    out, enc, _ = tiny_export
    texts = list(PARITY_SENTENCES)
    ref = enc.encode(texts, batch_size=batch_size, padding_side=side)
    got = OnnxEncoder(out / "fp32").encode(texts, batch_size=batch_size, padding_side=side)
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.99999 and np.abs(ref - got).max() <= 1e-4


def test_variant_fidelity(tiny_export) -> None:
    out, _, result = tiny_export
    fp32 = OnnxEncoder(out / "fp32").encode(list(PARITY_SENTENCES))
    for variant, floor in (("fp16", 0.999), ("int8", 0.995)):
        got = OnnxEncoder(out / variant).encode(list(PARITY_SENTENCES))
        assert (fp32 * got).sum(1).min() >= floor, variant
    # every weight MatMul of the 4 layers (q k v o gate up down) runs as a u8s8 integer GEMM with per-row
    # activation scales; smoothing folded into both RMSNorms and up_proj of each layer (o_proj stays unsmoothed)
    extra = result.variants["int8"].extra
    assert extra["quantized_matmuls"] == 4 * 7 and extra["fp32_matmuls"] == 0
    assert extra["method"] == "MatMulIntegerToFloat" and extra["smoothed_inputs"] == 4 * 3
    ops = [n.op_type for n in onnx.load(str(out / "int8" / "model.onnx")).graph.node]
    assert ops.count("MatMulIntegerToFloat") == 4 * 7 and ops.count("QuantizeLinear") == 4 * 4
    # per-tensor dynamic quantisation (one scale for the whole batch) must never appear
    assert not set(ops) & {"MatMul", "MatMulNBits", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}


def test_sts_gate_rejects_a_variant(tiny_model_dir: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    result = export_encoder(enc, tmp_path / "x", ["fp32", "int8"], sts_gate=fixed_score({"fp32": 80.0, "int8": 79.0}))
    assert result.published() == ["fp32"]
    assert not (tmp_path / "x" / "int8").exists()
    summary = json.loads((tmp_path / "x" / "export.json").read_text())
    assert "1.00 points below fp32" in summary["variants"]["int8"]["reason"]


def test_failed_parity_publishes_nothing(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    import bellm.export.api as api

    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "export.json").write_text('{"old": true}')  # a previous export
    monkeypatch.setattr(api, "FP32_MAX_ABS", -1.0)  # impossible bar
    with pytest.raises(ParityError, match="parity failed"):
        export_encoder(enc, dest, ["fp32"], sts_gate=False)
    assert [p.name for p in dest.iterdir()] == ["export.json"]  # the old export is untouched
    assert json.loads((dest / "export.json").read_text()) == {"old": True}
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize(("arch", "k", "causal"), [("mistral", 1, [1, 1, 0]), ("qwen2", 0, [1, 1, 1]),
                                                   ("qwen3", "all", [0, 0, 0])])
def test_other_architectures_and_extreme_k(tiny_model_factory, tmp_path: Path, arch: str, k, causal) -> None:
    enc = load_encoder(str(tiny_model_factory(arch, 3)), bidirectional_layers=k, pooling="mean")
    result = export_encoder(enc, tmp_path / arch, ["fp32"], sts_gate=False)
    assert result.variants["fp32"].parity["min_cosine"] >= 0.99999
    report = check_graph(tmp_path / arch / "fp32" / "model.onnx")
    assert report.ok and report.k_found == sum(1 - c for c in causal)
    assert [a["is_causal"] for _, a in attention_attrs(tmp_path / arch / "fp32" / "model.onnx")] == causal


def test_ms_mha_attention_op(tiny_model_dir: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    result = export_encoder(enc, tmp_path / "m", ["fp32"], attention_op="ms_mha", sts_gate=False)
    path = tmp_path / "m" / "fp32" / "model.onnx"
    attrs = attention_attrs(path)
    assert [op for op, _ in attrs] == ["MultiHeadAttention"] * 4
    assert [a["unidirectional"] for _, a in attrs] == [1, 1, 0, 0]
    assert check_graph(path).k_found == 2
    assert result.variants["fp32"].parity["min_cosine"] >= 0.99999
    assert json.loads((tmp_path / "m" / "fp32" / "bellm.json").read_text())["attention_op"] == "ms_mha"


@pytest.mark.parametrize("pooling", ["mean_span", "last_mean_span"])
def test_span_poolings_have_span_input(tiny_model_dir: Path, tmp_path: Path, pooling: str) -> None:
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2, pooling=pooling)
    export_encoder(enc, tmp_path / "s", ["fp32"], sts_gate=False)
    c = json.loads((tmp_path / "s" / "fp32" / "bellm.json").read_text())
    assert c["inputs"] == ["input_ids", "attention_mask", "span_mask"]
    texts = ["A dog runs.", "The weather is nice today in the city."]
    np.testing.assert_allclose(OnnxEncoder(tmp_path / "s").encode(texts), enc.encode(texts), atol=1e-5)


def test_external_data(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Models past the 2 GB protobuf limit keep weights in model.onnx.data (threshold lowered here)."""
    import bellm.export.api as api

    monkeypatch.setattr(api, "EXTERNAL_DATA_BYTES", 0)
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    export_encoder(enc, tmp_path / "big", ["fp32"], sts_gate=False)
    d = tmp_path / "big" / "fp32"
    assert (d / "model.onnx.data").stat().st_size > (d / "model.onnx").stat().st_size
    assert check_graph(d / "model.onnx").ok
    assert OnnxEncoder(d).encode("hello").shape == (64,)


def test_bad_arguments(tiny_model_dir: Path, tmp_path: Path) -> None:
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    with pytest.raises(ValueError, match="unknown variant"):
        export_encoder(enc, tmp_path / "a", ["fp8"])
    with pytest.raises(ValueError, match="attention_op"):
        export_encoder(enc, tmp_path / "b", ["fp32"], attention_op="flash", sts_gate=False)
    with pytest.raises(ValueError, match="opset"):
        export_encoder(enc, tmp_path / "c", ["fp32"], opset=17)
    assert not (tmp_path / "b").exists()


def test_export_refuses_a_foreign_nonempty_destination(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`bellm export -o DIR` used to delete whatever DIR held (notes, other models) with exit code 0."""
    from typer.testing import CliRunner

    from bellm.cli import _register, app
    from bellm.export.api import ExportDestinationError, check_destination

    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("precious")
    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    with pytest.raises(ExportDestinationError, match="not a previous bellm export"):
        export_encoder(enc, dest, ["fp32"], sts_gate=False)
    _register()
    res = CliRunner().invoke(app, ["export", "-o", str(dest), "--model", str(tiny_model_dir), "--variants", "fp32",
                                   "--no-sts-gate"])
    assert res.exit_code == 2 and "--overwrite" in res.output, res.output
    assert (dest / "notes.txt").read_text() == "precious"
    export_encoder(enc, dest, ["fp32"], sts_gate=False, overwrite=True)  # said explicitly
    assert not (dest / "notes.txt").exists() and (dest / "export.json").is_file()
    check_destination(dest)  # a previous bellm export may be replaced (export_encoder's first step; no 2nd export)


def test_parity_gate_fails_on_nan() -> None:
    """Python's min/max skip NaN, so a NaN embedding used to pass the parity gate."""
    from bellm.export.parity import run_parity
    from bellm.tokenize import Encoded

    encs = [Encoded([1, 2, 3 + i], (0, 3), False) for i in range(32)]

    def ref(ids, mask, span):  # noqa: ANN001, ANN202
        return np.ones((ids.shape[0], 4), dtype=np.float32)

    def nan_once(ids, mask, span):  # noqa: ANN001, ANN202
        out = ref(ids, mask, span)
        out[0, 0] = np.nan
        return out

    with pytest.raises(ParityError, match="parity failed"):
        run_parity(ref, nan_once, encs, 0.99, 1e-4, "nan")
    with pytest.raises(ParityError, match="parity failed"):
        run_parity(ref, nan_once, encs, 0.99, None, "nan without abs bound")
