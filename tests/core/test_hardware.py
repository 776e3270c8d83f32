"""Precision resolution: `auto` picks bf16 only where it is native (CUDA, or a CPU with bf16 instructions)."""

from __future__ import annotations

import pytest

from bellm import hardware


def test_use_bf16_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)
    assert not hardware.use_bf16("auto", "cpu") and hardware.use_bf16("auto", "cuda")
    assert hardware.use_bf16("bf16", "cpu") and not hardware.use_bf16("fp32", "cuda")
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    assert hardware.use_bf16("auto", "cpu")
    with pytest.raises(ValueError, match="precision"):
        hardware.use_bf16("fp8", "cpu")


def test_cpu_flags_are_read_from_cpuinfo() -> None:
    hardware.cpu_supports_bf16.cache_clear()
    text = open("/proc/cpuinfo").read()
    assert hardware.cpu_supports_bf16() == any(f" {f}" in text for f in hardware.BF16_FLAGS)
