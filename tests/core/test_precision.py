"""Inference precision: native-bf16 detection, the agreement check with fp32, the override."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bellm.precision as precision
from bellm import hardware
from bellm.encoder import load_encoder

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\nmodel name\t: x\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 f16c\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n"


@pytest.mark.parametrize(("text", "native"), [(X86_BF16, True), (X86_AVX2, False), (ARM_BF16, True), ("", False)])
def test_detects_native_bf16(tmp_path: Path, monkeypatch, text: str, native: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    real = hardware.cpu_flags
    monkeypatch.setattr(hardware, "cpu_flags", lambda *a: real(info))
    hardware.cpu_supports_bf16.cache_clear()
    try:
        assert hardware.cpu_supports_bf16() is native
        assert precision.auto_dtype("cpu") == ("bfloat16" if native else "float32")
    finally:
        hardware.cpu_supports_bf16.cache_clear()
    assert real(tmp_path / "missing") == set()


def test_bad_dtype() -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        precision.validate_dtype("int4")


@pytest.fixture()
def texts() -> list[str]:
    return ["A man plays a guitar.", "Someone is playing music on a stage tonight.", "hi"]


def test_auto_keeps_fp32_without_native_bf16(tiny_model_dir: Path, monkeypatch, texts) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    enc = load_encoder(str(tiny_model_dir), dtype="auto")
    ref = load_encoder(str(tiny_model_dir))
    assert enc.precision["dtype"] == "float32" and enc.dtype == "float32"
    assert enc.fingerprint == ref.fingerprint
    np.testing.assert_array_equal(enc.encode(texts), ref.encode(texts))


def test_auto_uses_bf16_when_native_and_agreeing(tiny_model_dir: Path, monkeypatch, texts) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_COSINE", 0.9)
    enc = load_encoder(str(tiny_model_dir), dtype="auto")
    ref = load_encoder(str(tiny_model_dir))
    assert enc.precision["dtype"] == "bfloat16" and enc.dtype == "bfloat16"
    assert enc.precision["bf16_min_cosine"] >= 0.9
    assert enc.fingerprint != ref.fingerprint  # bf16 embeddings never share fp32's cache entries
    cos = (enc.encode(texts) * ref.encode(texts)).sum(1)
    assert cos.min() >= 0.9 and cos.min() < 1.0  # really computed in bf16


def test_auto_falls_back_to_exact_fp32_on_disagreement(tiny_model_dir: Path, monkeypatch, texts) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision, "BF16_MIN_COSINE", 1.1)  # impossible bar
    enc = load_encoder(str(tiny_model_dir), dtype="auto")
    ref = load_encoder(str(tiny_model_dir))
    assert enc.precision["dtype"] == "float32" and "min cosine" in enc.precision["reason"]
    np.testing.assert_array_equal(enc.encode(texts), ref.encode(texts))  # fp32 weights restored, not re-cast


def test_explicit_override_skips_the_check(tiny_model_dir: Path, monkeypatch) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    enc = load_encoder(str(tiny_model_dir), dtype="bfloat16")
    assert enc.dtype == "bfloat16" and enc.precision["reason"] == "requested"


def test_fastest_faithful_engine(monkeypatch) -> None:
    """PyTorch where bf16 is native, else ONNX Runtime fp32 (the zero-shot column's engine in the flow)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    assert precision.fastest_faithful_engine() == "onnx"
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    assert precision.fastest_faithful_engine() == "pytorch"
