"""The export's graph optimizer: torch's default (`optimize=True`) less its quadratic rule, and nothing else lost."""

from __future__ import annotations

from pathlib import Path

import pytest

import bellm.export.trace as trace_module
from bellm.encoder import load_encoder
from bellm.export.optimize import SKIPPED_RULES, graph_signature, rewrite_rules


def test_graph_equals_the_exporters_default_optimizer(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same nodes, attributes and weights as `torch.onnx.export(optimize=True)` on a tiny model: dropping the
    quadratic rule halves the real model's export time and must change nothing else, the fused
    `RMSNormalization`/`RotaryEmbedding` included (a first version forgot the fusion step)."""
    import onnxscript._framework_apis.torch_2_11 as exporter_apis  # what torch 2.13's exporter calls

    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    ours = trace_module.trace(enc.module)
    monkeypatch.setattr(trace_module, "optimize_graph", exporter_apis.optimize)
    default = trace_module.trace(enc.module)
    assert graph_signature(ours) == graph_signature(default)
    assert {"RMSNormalization", "RotaryEmbedding", "Attention"} <= {n.op_type for n in ours.graph}


def test_the_skipped_rule_exists_and_is_skipped() -> None:
    from onnxscript import rewriter

    defaults = [r.name for r in rewriter._DEFAULT_REWRITE_RULES]
    kept = [r.name for r in rewrite_rules()]
    assert SKIPPED_RULES <= set(defaults) and not SKIPPED_RULES & set(kept)
    assert len(kept) == len(defaults) - len(SKIPPED_RULES)
