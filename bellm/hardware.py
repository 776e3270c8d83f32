"""What the machine can do fast: native bf16 on this CPU, and the autocast a setting resolves to.

Torch-free at import (the runtime may read it); torch is imported only by `autocast`."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

from bellm.errors import InputError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags for native bf16 dot products (AVX-512 BF16, AMX)


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU computes bf16 natively (there bf16 GEMM runs ~4.5x fp32 here; elsewhere it is emulated)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in BF16_FLAGS)


def use_bf16(precision: str, device_type: str) -> bool:
    """Resolve a precision setting ("auto", "fp32", "bf16") for a device type ("cpu", "cuda")."""
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        return device_type == "cuda" or (device_type == "cpu" and cpu_supports_bf16())
    return precision == "bf16"


def autocast(precision: str, device_type: str) -> Any:
    """A bf16 autocast context for the device when the setting resolves to bf16, else a no-op."""
    if not use_bf16(precision, device_type):
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16)
