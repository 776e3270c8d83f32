"""Which precision PyTorch inference runs in: bf16 where the hardware has native bf16, checked against fp32.

On a CPU with native bf16 dot products (x86 AVX512_BF16 or AMX, Arm's BF16 extension) oneDNN runs bf16
GEMMs several times faster than fp32 (measured: 901 vs ~190 GFLOP/s on one 2-core AVX-512 machine, 3.5x
sentences/s end to end). Without them bf16 is emulated and slower than fp32, so `auto` keeps fp32 there.
A bf16 encoder is only used after a quick agreement check with fp32 on a few sentences (min cosine
`BF16_MIN_COSINE`); `float32` / `bfloat16` given explicitly are honoured without the check (the override).
Detection of native bf16 lives in `bellm.hardware` (shared with training's autocast).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bellm import hardware
from bellm.errors import InputError

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
BF16_MIN_COSINE = 0.999  # measured on SmolLM2-135M: 0.9998 on 512 STS-B sentences
AGREEMENT_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates again.",
    "hi",
    "Kids are playing soccer in the park while their parents watch from the benches nearby.",
    "Prices rose 3.5% in 2023, the fastest pace since 1991.",
    "Ein Mann spielt Gitarre auf der Bühne.",
    "Why?",
    "Scientists discovered a new species of frog in the rainforest of Madagascar.",
)


class PrecisionError(InputError):
    """An unknown dtype name."""


def auto_dtype(device: str = "cpu") -> str:
    """The fastest faithful dtype for inference on `device`: bf16 with native support, else fp32."""
    if str(device).startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if hardware.cpu_supports_bf16() else "float32"


def fastest_faithful_engine() -> str:
    """Where to run a plain (non-shipping) evaluation, e.g. the zero-shot column: "pytorch" where it computes
    in bf16 natively (a CUDA device, or a CPU with native bf16), else "onnx" (ORT fp32 on CPU: 1.56x PyTorch
    fp32 on an AVX2 CPU, BENCHMARKS.md, and within 1e-6 of it)."""
    import torch

    if torch.cuda.is_available() or auto_dtype("cpu") == "bfloat16":
        return "pytorch"
    return "onnx"


def validate_dtype(dtype: str | None) -> str:
    name = "auto" if dtype is None else str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise PrecisionError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return name


def agreement(encoder: Any, dtype: str, sentences: Sequence[str] = AGREEMENT_SENTENCES) -> float:
    """Cast `encoder` (fp32) to `dtype` in place and return the min cosine between its fp32 and new embeddings.

    The fp32 weights are restored when the caller rejects the result (`restore`), never re-derived from bf16.
    """
    import numpy as np
    import torch

    ref = encoder.encode(list(sentences), batch_size=len(sentences))  # (N,H) fp32, normalised
    encoder._fp32_params = cast_parameters(encoder.module, getattr(torch, dtype))
    got = encoder.encode(list(sentences), batch_size=len(sentences))
    return float(np.min((ref * got).sum(1)))


def cast_parameters(module: Any, dtype: Any) -> list[tuple[Any, Any]]:
    """Cast the floating-point parameters of `module` to `dtype` (buffers such as RoPE's inverse frequencies
    stay fp32); returns (parameter, previous tensor) pairs for `restore`."""
    old = []
    for p in module.parameters():
        if p.is_floating_point():
            old.append((p, p.data))
            p.data = p.data.to(dtype)
    return old


def restore(saved: list[tuple[Any, Any]]) -> None:
    for p, data in saved:
        p.data = data


def choose_precision(encoder: Any, requested: str | None = "auto", min_cosine: float | None = None) -> dict:
    """Apply the inference dtype to an fp32 `encoder` in place; returns what was decided and why.

    `auto`: bf16 when the device has native support *and* it agrees with fp32 (min cosine >= `min_cosine` on
    `AGREEMENT_SENTENCES`, default `BF16_MIN_COSINE`), else fp32. An explicit dtype is applied as is (no check).
    """
    import torch

    min_cosine = BF16_MIN_COSINE if min_cosine is None else min_cosine
    name = validate_dtype(requested)
    device = str(encoder.device)
    if name != "auto":
        if name != "float32":
            cast_parameters(encoder.module, getattr(torch, name))
        return {"dtype": name, "reason": "requested"}
    chosen = auto_dtype(device)
    if chosen == "float32":
        return {"dtype": "float32", "reason": f"no native bf16 on {device}"}
    cos = agreement(encoder, chosen)
    saved = encoder.__dict__.pop("_fp32_params", [])
    if cos < min_cosine:
        restore(saved)
        log.warning("bf16 disagrees with fp32 (min cosine %.5f < %s): using fp32", cos, min_cosine)
        return {"dtype": "float32", "reason": f"bf16 min cosine {cos:.5f} < {min_cosine}", "bf16_min_cosine": cos}
    log.info("inference in %s (min cosine to fp32 %.5f)", chosen, cos)
    return {"dtype": chosen, "reason": f"native bf16, min cosine to fp32 {cos:.5f}", "bf16_min_cosine": cos}
