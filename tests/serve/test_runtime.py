"""The torch-free ONNX runtime: imports, input handling, batching, the consumer contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import assert_runs_without

from bellm.runtime import ExportFormatError, OnnxEncoder, pick_providers, resolve_export_dir


def test_runtime_never_imports_torch(export_dir: Path) -> None:
    code = (
        "from bellm.runtime import OnnxEncoder\n"
        f"enc = OnnxEncoder({str(export_dir)!r})\n"
        "v = enc.encode(['A man plays a guitar.', 'Two dogs.'])\n"
        "assert v.shape == (2, 64), v.shape\n"
        "assert enc.fingerprint and enc.describe()['variant'] == 'fp32'\n"
    )
    assert_runs_without(code, ("torch", "transformers"))


def test_shapes_and_order(rt: OnnxEncoder) -> None:
    texts = ["b sentence", "a sentence that is longer than the other", "b sentence", ""]
    emb = rt.encode(texts, batch_size=2)
    assert emb.shape == (4, 64) and emb.dtype == np.float32
    np.testing.assert_array_equal(emb[0], emb[2])  # dedupe keeps positions
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(rt.encode(texts, batch_size=32), emb, atol=1e-5)  # batching-invariant
    np.testing.assert_allclose(rt.encode(texts, padding_side="left"), emb, atol=1e-5)  # padding-invariant
    assert rt.encode("b sentence").shape == (64,)
    assert rt.encode([]).shape == (0, 64)


def test_bad_input(rt: OnnxEncoder) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        rt.encode(["ok", 3])
    with pytest.raises(TypeError, match="texts must be"):
        rt.encode(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="normalises inside the graph"):
        rt.encode(["x"], normalize=False)
    with pytest.raises(ValueError, match="batch_size"):
        rt.encode(["x"], batch_size=0)


def test_overlong_text_is_truncated_keeping_the_prompt(export_dir: Path, rt: OnnxEncoder) -> None:
    """The expected ids are built independently, by a consumer following only bellm.json's documented truncation
    rule (cut the text at a token end, re-encode the whole prompt): the prompt's closing characters survive.
    Cutting the prompted text at the end instead gives another embedding, so this can fail."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    d = export_dir / "fp32"
    cfg = json.loads((d / "bellm.json").read_text())
    assert cfg["truncation_rule"] == "text-cut-reencode/1"
    long = "word " * 5000
    emb = rt.encode([long, "short"])
    assert rt.truncated_count == 1 and np.isfinite(emb).all()
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    prefix, suffix = cfg["prompt"].split("{text}")
    n = cfg["max_length"]
    full = tok.encode(prefix + long + suffix)
    c0, c1 = len(prefix), len(prefix) + len(long)
    cuts = sorted({b for _, b in full.offsets if c0 < b < c1})
    m = len(cuts) + 1 - (len(full.ids) - n)
    while len(tok.encode(prefix + long[: cuts[m - 1] - c0] + suffix).ids) > n:
        m -= 1
    kept = tok.encode(prefix + long[: cuts[m - 1] - c0] + suffix).ids
    assert tok.decode(kept).endswith(suffix) and len(kept) <= n
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(ids: list[int]) -> np.ndarray:
        feeds = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        return sess.run(["sentence_embedding"], feeds)[0][0]

    np.testing.assert_allclose(emb[0], run(kept), atol=1e-5)
    assert not np.allclose(emb[0], run(full.ids[:n]), atol=1e-3)  # the prompt-dropping cut differs


def test_consumer_with_only_ort_and_tokenizers(export_dir: Path, rt: OnnxEncoder) -> None:
    """The model card's recipe: any pad id, attention_mask 0, either side, identical results."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    d = export_dir / "fp32"
    cfg = json.loads((d / "bellm.json").read_text())
    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    sess = ort.InferenceSession(str(d / "model.onnx"), providers=["CPUExecutionProvider"])
    texts = ["A man plays guitar.", "Someone is playing music on a stage tonight."]
    encs = [tok.encode(cfg["prompt"].format(text=s)).ids for s in texts]
    seq = max(map(len, encs))
    outs = []
    for pad_id in (0, 123):
        for side in ("right", "left"):
            rows, masks = [], []
            for e in encs:
                pad = seq - len(e)
                rows.append(e + [pad_id] * pad if side == "right" else [pad_id] * pad + e)
                masks.append([1] * len(e) + [0] * pad if side == "right" else [0] * pad + [1] * len(e))
            feeds = {"input_ids": np.array(rows, dtype=np.int64), "attention_mask": np.array(masks, dtype=np.int64)}
            outs.append(sess.run(["sentence_embedding"], feeds)[0])
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], atol=1e-5)
    np.testing.assert_allclose(outs[0], rt.encode(texts), atol=1e-5)


def test_resolve_and_describe(export_dir: Path) -> None:
    assert resolve_export_dir(export_dir) == export_dir / "fp32"
    assert resolve_export_dir(export_dir, "int8") == export_dir / "int8"
    assert resolve_export_dir(export_dir / "int8" / "model.onnx") == export_dir / "int8"
    with pytest.raises(ExportFormatError, match="not exported"):
        resolve_export_dir(export_dir, "bf16")
    with pytest.raises(ExportFormatError, match="no such export"):
        OnnxEncoder(export_dir / "missing")
    a, b = OnnxEncoder(export_dir), OnnxEncoder(export_dir, variant="int8")
    assert a.fingerprint != b.fingerprint and a.fingerprint == OnnxEncoder(export_dir / "fp32").fingerprint
    assert a.describe()["runtime"] == "onnxruntime" and b.describe()["variant"] == "int8"


def test_broken_export(tmp_path: Path, export_dir: Path) -> None:
    d = tmp_path / "broken"
    d.mkdir()
    (d / "bellm.json").write_text(json.dumps({"prompt": "{text}"}))
    with pytest.raises(ExportFormatError, match="bellm.json: kind: unknown kind None"):
        OnnxEncoder(d)


def test_provider_choice() -> None:
    assert pick_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert pick_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="not available"):
        pick_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_default_variant_follows_the_providers(export_dir: Path) -> None:
    from bellm.runtime import attention_op_for, default_variant

    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert default_variant(["fp16", "fp32", "int8"], cuda) == "fp16"
    assert default_variant(["fp16", "fp32", "int8"], ["TensorrtExecutionProvider", *cuda]) == "fp16"
    assert default_variant(["fp16", "fp32", "int8"], ["CPUExecutionProvider"]) == "fp32"
    assert default_variant(["fp32", "int8"], cuda) == "fp32"  # no fp16 exported: fp32 on the GPU
    assert default_variant(["int8"], ["CPUExecutionProvider"]) == "int8"
    # resolution under an export root uses it: the shared export has fp16
    assert resolve_export_dir(export_dir, providers=cuda) == export_dir / "fp16"
    assert resolve_export_dir(export_dir, providers=["CPUExecutionProvider"]) == export_dir / "fp32"
    assert resolve_export_dir(export_dir, "int8", providers=cuda) == export_dir / "int8"  # named wins
    assert [attention_op_for(b) for b in (1, 32, 128, 256, 512, 1024)] == ["onnx"] * 4 + ["ms_mha"] * 2


def test_serve_target_default_variant_follows_the_providers(export_dir: Path, monkeypatch) -> None:
    import onnxruntime as ort

    from bellm.serve import resolve_target

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert resolve_target(str(export_dir))[0] == export_dir / "fp16"
    assert resolve_target(str(export_dir), providers=["CPUExecutionProvider"])[0] == export_dir / "fp32"


def test_tokenize_matches_what_encode_runs(rt: OnnxEncoder) -> None:
    from bellm.tokenize import encode_one

    texts = ["a b c", "A man is playing a guitar."]
    assert rt.tokenize(texts) == [encode_one(rt.tokenizer, rt.template, t, rt.max_length) for t in texts]


def test_evaluation_accepts_runtime(rt: OnnxEncoder) -> None:
    from bellm.evaluation import evaluate

    result = evaluate(rt, "stsb", max_pairs=20, cache=False)
    assert result["model"] == rt.fingerprint and result["encoder"]["runtime"] == "onnxruntime"
