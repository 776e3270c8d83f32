"""Shared benchmark helpers: the machine's fp32 GEMM rate, a fixed sentence sample, load reporting."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

from bellm.data import read_pairs
from bellm.paths import STS_DIR


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls of `fn` (the caller warms up first)."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_gflops(n: int = 2048, repeats: int = 5, dtype: str = "float32") -> float:
    """Best-of matmul rate (GFLOP/s) in `dtype` on the current torch thread count."""
    import torch

    a, b = (torch.randn(n, n).to(getattr(torch, dtype)) for _ in range(2))
    torch.mm(a, b)
    return 2 * n**3 / best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def timed_encode(encode: Callable[..., object], texts: list[str], batch_size: int, repeats: int = 2) -> float:
    """Best wall time of encoding all texts, after one warm-up batch (ORT allocations, oneDNN primitives)."""
    encode(texts[:batch_size], batch_size=batch_size)
    return best_seconds(lambda: encode(texts, batch_size=batch_size), repeats)


def sts_sentences(n: int = 512, split: str = "test") -> list[str]:
    """The first n unique sentences of an STS-B split (a fixed, STS-style sample; decisions use "dev")."""
    return read_pairs(STS_DIR / "stsb" / f"{split}.tsv").unique_sentences(n)


# The CPU features that decide which kernels run (bf16/int8 native or emulated): recorded with every speed number.
KEY_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
             "amx_tile", "asimddp", "i8mm", "bf16")


def key_cpu_flags() -> list[str]:
    """This CPU's `KEY_FLAGS`, sorted."""
    from bellm.hardware import cpu_flags

    flags = cpu_flags()
    return sorted(f for f in KEY_FLAGS if f in flags)


def machine() -> dict[str, object]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": key_cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": os.getloadavg()[0],
        "torch": torch.__version__,
    }
