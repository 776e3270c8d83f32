"""Evaluation tasks: load an encoder from a plain spec inside the task, evaluate a suite, gate it."""

from __future__ import annotations

from typing import Any

from prefect import task

from bellm.provenance import code_fingerprint
from tasks.common import RETRY_DELAYS, content_key, retry_transient


def load_spec(spec: dict[str, Any]) -> Any:
    """An encoder from a JSON-able spec: {"kind": "torch"|"onnx"|"baseline", ...}."""
    kind = spec["kind"]
    if kind == "torch":
        from bellm.encoder import load_encoder

        return load_encoder(
            spec["source"],
            bidirectional_layers=spec["bidirectional_layers"],
            pooling=spec["pooling"],
            prompt=spec["prompt"],
            max_length=spec["max_length"],
            adapter=spec.get("adapter"),
            dtype=spec.get("dtype"),
        )
    if kind == "onnx":
        from bellm.runtime import OnnxEncoder

        return OnnxEncoder(spec["path"])
    if kind == "baseline":
        from bellm.baselines import MiniLMEncoder

        return MiniLMEncoder()
    raise ValueError(f"unknown encoder spec kind {kind!r}")


def suite_data_sha256(suite: str | list[str]) -> dict[str, str]:
    """{file: sha256} of every data file the suite reads (its content keys the evaluation cache)."""
    from bellm.sts import load_suite

    return {f: sha for t in load_suite(suite) for f, sha in t.files.items()}


def _eval_key(context: Any, params: dict[str, Any]) -> str:
    """Spec (incl. dtype), suite, pair cap, the model's content hash, the suite's data hashes and the code."""
    return content_key(
        "evaluate", params["spec"], params["suite"], params.get("max_pairs"), params.get("model_key"),
        suite_data_sha256(params["suite"]), code_fingerprint(),
    )


@task(
    name="evaluate",
    cache_key_fn=_eval_key,
    persist_result=True,
    retries=len(RETRY_DELAYS),
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
)
def evaluate_suite(
    spec: dict[str, Any],
    suite: str | list[str],
    max_pairs: int | None = None,
    batch_size: int = 32,
    model_key: str | None = None,
) -> dict[str, Any]:
    """STS result (evaluation schema) of the encoder described by `spec`.

    Cached by (spec, suite, max_pairs, `model_key` = a content hash of what produced the model): a re-run
    with the same inputs skips it; sentence embeddings are also cached on disk by model fingerprint.
    """
    from bellm.evaluation import evaluate

    return evaluate(load_spec(spec), suite, max_pairs=max_pairs, batch_size=batch_size)


@task(name="enforce-gates", retries=0)
def enforce_gates_task(result: dict[str, Any], gates: dict[str, Any], champion: dict[str, Any] | None) -> dict:
    """Raise `GateFailed` (never retried) naming every failed check; return the verdict otherwise."""
    from bellm.config import GateConfig
    from bellm.gates import enforce_gates

    return enforce_gates(result, GateConfig.model_validate(gates), champion).to_dict()
