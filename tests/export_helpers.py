"""One shared tiny export per test session (tracing dominates export time), used by the export and runtime tests."""

from __future__ import annotations

import functools
from pathlib import Path

SCORES = {"fp32": 80.0, "int8": 79.8, "fp16": 80.1}  # fixed STS scores: every variant passes the gate


def fixed_score(scores: dict[str, float]):
    """A scoring callback giving each variant a set Spearman (keyed by the variant in its contract)."""
    return lambda enc: scores[enc.contract["variant"]]


@functools.cache
def shared_export(model_dir: str, root: str):
    """(export dir, encoder, ExportResult): k=2 of 4, max_length 24 (long texts truncate), all variants."""
    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder

    enc = load_encoder(model_dir, bidirectional_layers=2, max_length=24)
    out = Path(root) / "tiny"
    result = export_encoder(enc, out, ["fp32", "int8", "fp16"], sts_gate=fixed_score(SCORES))
    return out, enc, result
