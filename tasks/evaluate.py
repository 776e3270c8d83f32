"""Evaluation tasks: load an encoder from its `EncoderConfig` (or an exported ONNX directory) inside the task,
evaluate a suite, gate it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from bellm.config import EncoderConfig
from bellm.keys import eval_key
from bellm_app.tasks.common import retrying_task


def _eval_key(context: Any, p: dict[str, Any]) -> str:
    return eval_key(p["encoder"], p.get("adapter"), p.get("dtype"), p["suite"], p.get("max_pairs"), p.get("model_key"))


@retrying_task("evaluate", cache_key_fn=_eval_key, persist_result=True)
def evaluate_suite(
    encoder: EncoderConfig | Path | str,
    suite: str | list[str],
    max_pairs: int | None = None,
    batch_size: int = 32,
    model_key: str | None = None,
    adapter: str | None = None,
    dtype: str | None = None,
) -> dict[str, Any]:
    """STS result (evaluation schema) of an encoder (`bellm.trial.load_for_eval`).

    Cached by `bellm.keys.eval_key` (encoder, adapter, suite, max_pairs, `model_key` = a content hash of what
    produced the model): a re-run with the same inputs skips it; sentence embeddings are also cached on disk by
    model fingerprint.
    """
    from bellm.evaluation import evaluate
    from bellm.trial import load_for_eval

    return evaluate(load_for_eval(encoder, adapter, dtype), suite, max_pairs=max_pairs, batch_size=batch_size)


@task(name="enforce-gates", retries=0)
def enforce_gates_task(result: dict[str, Any], gates: dict[str, Any], champion: dict[str, Any] | None) -> dict:
    """Raise `GateFailed` (never retried) naming every failed check; return the verdict otherwise."""
    from bellm.config import GateConfig
    from bellm.gates import enforce_gates

    return enforce_gates(result, GateConfig.model_validate(gates), champion).to_dict()
