"""Evaluation tasks: load an encoder from its `EncoderConfig` (or an exported ONNX directory) inside the task,
evaluate a suite, gate it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from bellm.config import EncoderConfig
from bellm.provenance import code_fingerprint
from tasks.common import content_key, retrying_task

BASELINES = ("minilm",)


def load_for_eval(encoder: EncoderConfig | Path | str, adapter: str | None = None, dtype: str | None = None) -> Any:
    """An encoder to evaluate: a bellm encoder from its config (+ a trained adapter, whose settings must agree),
    an exported ONNX variant directory (a `Path`, run through the torch-free `bellm.runtime.OnnxEncoder`),
    or a named baseline."""
    if isinstance(encoder, EncoderConfig):
        from bellm.encoder import load_encoder

        return load_encoder(encoder, adapter=adapter, dtype=dtype)
    if isinstance(encoder, Path):
        from bellm.runtime import OnnxEncoder, usable_cpus

        return OnnxEncoder(encoder, threads=usable_cpus())  # the benchmarks' setting (ORT's default: physical cores)
    if encoder == "minilm":
        from bellm.baselines import MiniLMEncoder

        return MiniLMEncoder()
    raise ValueError(
        f"unknown encoder {encoder!r}: give an EncoderConfig, an export directory (Path) or a baseline {BASELINES}"
    )


def suite_data_sha256(suite: str | list[str]) -> dict[str, str]:
    """{file: sha256} of every data file the suite reads (its content keys the evaluation cache), by portable
    path so the key is the same in every checkout."""
    from bellm.paths import portable_path
    from bellm.sts import load_suite

    return {portable_path(f): sha for t in load_suite(suite) for f, sha in t.files.items()}


def _eval_key(context: Any, params: dict[str, Any]) -> str:
    """Encoder (incl. dtype, adapter), suite, pair cap, the model's content hash, the suite's data hashes and the
    code. An export (a directory inside a run, which differs per run) is keyed by its variant name only: the
    caller's `model_key` names what was exported."""
    enc = params["encoder"]
    if isinstance(enc, EncoderConfig):
        desc: Any = enc.model_dump(mode="json")
    elif isinstance(enc, Path):
        desc = {"onnx": enc.name}
    else:
        desc = enc
    dtype = params.get("dtype")
    if dtype == "auto":  # keyed by what it resolves to on this machine (bf16 results are not fp32 results)
        from bellm.precision import auto_dtype

        dtype = f"auto:{auto_dtype()}"
    return content_key(
        "evaluate", desc, params.get("adapter"), dtype, params["suite"], params.get("max_pairs"),
        params.get("model_key"), suite_data_sha256(params["suite"]), code_fingerprint(),
    )


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
    """STS result (evaluation schema) of an encoder (`load_for_eval`).

    Cached by (encoder, adapter, suite, max_pairs, `model_key` = a content hash of what produced the model): a
    re-run with the same inputs skips it; sentence embeddings are also cached on disk by model fingerprint.
    """
    from bellm.evaluation import evaluate

    return evaluate(load_for_eval(encoder, adapter, dtype), suite, max_pairs=max_pairs, batch_size=batch_size)


@task(name="enforce-gates", retries=0)
def enforce_gates_task(result: dict[str, Any], gates: dict[str, Any], champion: dict[str, Any] | None) -> dict:
    """Raise `GateFailed` (never retried) naming every failed check; return the verdict otherwise."""
    from bellm.config import GateConfig
    from bellm.gates import enforce_gates

    return enforce_gates(result, GateConfig.model_validate(gates), champion).to_dict()
