"""Shared benchmark helpers: the machine's fp32 GEMM rate, a fixed sentence sample, load reporting."""

from __future__ import annotations

import os
import platform
import time

from bellm.data import read_pairs
from bellm.paths import STS_DIR


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of fp32 matmul rate (GFLOP/s) on the current torch thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def sts_sentences(n: int = 512) -> list[str]:
    """The first n unique sentences of STS-B test (a fixed, STS-style sample)."""
    pairs = read_pairs(STS_DIR / "stsb" / "test.tsv")
    seen: dict[str, None] = {}
    for a, b in zip(pairs.sentence1, pairs.sentence2, strict=True):
        seen.setdefault(a)
        seen.setdefault(b)
        if len(seen) >= n:
            break
    return list(seen)[:n]


def machine() -> dict[str, object]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": os.getloadavg()[0],
        "torch": torch.__version__,
    }
