"""The batch-invariance gate: an embedding must not depend on what else is in its batch, nor on padding.

The contract (`bellm.json`, README) promises consumers they may pad with any id, on either side, and batch
as they like. That is true of the fp32 graph (masks, RoPE positions over real tokens) but not automatically
of a quantised one: dynamic quantisation computes one activation scale over the whole (B,S,H) tensor, padded
positions included, so a sentence's vector moves with its neighbours and even with the pad id (measured on
SmolLM2-135M: up to 3e-2 per component). This gate encodes each sentence alone (batch 1, no padding), then
inside batches with right and left padding and several pad ids, in two orders, and bounds the largest
component difference to the alone vector: 1e-4 for fp32, 1e-3 for low-precision variants. A variant that
fails is never published.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bellm.export.parity import ParityError
from bellm.tokenize import Encoded, pad_batch

FP32_MAX_DIFF = 1e-4
QUANTIZED_MAX_DIFF = 1e-3
PAD_IDS: tuple[int, ...] = (0, 7, 31_337)  # any id: the graph must mask it out (31,337 < every supported vocab)
BATCH_CASES: tuple[tuple[str, str, int], ...] = tuple(
    (order, side, pad) for order in ("given", "reversed") for side in ("right", "left") for pad in PAD_IDS
)


class InvarianceError(ParityError):
    """A variant's embeddings depend on batch composition or padding; it is not published."""


@dataclass
class InvarianceReport:
    max_abs_diff: float = 0.0
    min_cosine: float = 1.0
    sentences: int = 0
    cases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def invariance_cases(encs: Sequence[Encoded]) -> list[tuple[dict[str, Any], list[int], tuple[np.ndarray, ...]]]:
    """(description, row order, padded batch) for every order × padding side × pad id."""
    out = []
    for order, side, pad in BATCH_CASES:
        idx = list(range(len(encs))) if order == "given" else list(reversed(range(len(encs))))
        out.append(({"order": order, "side": side, "pad_id": pad}, idx, pad_batch([encs[i] for i in idx], pad, side)))
    return out


def check_invariance(
    run: Any, encs: Sequence[Encoded], max_abs: float, name: str
) -> InvarianceReport:
    """Alone vs batched (both sides, several pad ids, two orders) through `run(ids, mask, span) -> (B,H)`.

    Raises `InvarianceError` when any component moves by more than `max_abs`. Needs sentences of different
    lengths (else nothing is padded and the check proves nothing).
    """
    if len({len(e.ids) for e in encs}) < 2:
        raise ValueError("the invariance check needs sentences of different token lengths (something must be padded)")
    alone = np.concatenate([run(*pad_batch([e])) for e in encs]).astype(np.float64)  # (N,H), no padding at all
    report = InvarianceReport(sentences=len(encs))
    for desc, idx, batch in invariance_cases(encs):
        got = np.asarray(run(*batch), dtype=np.float64)  # (N,H) in `idx` order
        ref = alone[idx]
        diff = float(np.abs(got - ref).max())
        cos = float(((got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))).min())
        report.cases.append({**desc, "max_abs_diff": diff, "min_cosine": cos})
        report.max_abs_diff = max(report.max_abs_diff, diff)
        report.min_cosine = min(report.min_cosine, cos)
    if report.max_abs_diff > max_abs:
        worst = max(report.cases, key=lambda c: c["max_abs_diff"])
        raise InvarianceError(
            f"{name}: batch/padding dependent: a sentence's embedding moves by {report.max_abs_diff:.2e} "
            f"(allowed {max_abs:.0e}) between being encoded alone and in a batch (worst: {worst['side']} padding, "
            f"pad id {worst['pad_id']}, {worst['order']} order)"
        )
    return report
