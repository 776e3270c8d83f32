"""Every cache key in one place: what decides a cached training, trial, evaluation or export.

The Prefect tasks and `bellm sweep` take their keys from here, so a key never depends on which command asked:
one configuration has one training directory (`$BELLM_HOME/train/<train_key>`), whoever trained it first. Every
key holds the code fingerprint (a code fix is never hidden behind a cached result) and the sha256 of the files it
read, by portable path (the same key in every checkout). A changed key recomputes; old directories are only left
behind (docs/guarantees.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bellm.config import EncoderConfig, RunConfig, training_tree
from bellm.paths import bellm_home, portable_path

# Training settings that never change the adapter (not in its key) and, with the dev curve's (they pick which
# step's adapter is kept, so they stay in the key), those a resume may change.
RUN_ONLY_TRAIN = ("checkpoint_every", "keep_checkpoints", "num_threads", "progress")
NON_NUMERIC_TRAIN = (*RUN_ONLY_TRAIN, "eval_every", "select_best", "eval_max_pairs")


def content_key(*parts: Any) -> str:
    """A stable key from JSON-serialisable parts (configs, file hashes)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _settings(cfg: RunConfig, drop: Sequence[str]) -> dict[str, Any]:
    """The training settings, with the two dev-pair caps (`data.max_eval_pairs` also caps the flow's evaluations,
    `train.eval_max_pairs` only the curve) as the one cap training reads, `cfg.dev_curve_pairs`: a sweep trial and a
    profile that train alike share a key whichever field set their curve's cap."""
    tree = training_tree(cfg)
    tree["data"].pop("max_eval_pairs", None)
    tree["train"]["eval_max_pairs"] = cfg.dev_curve_pairs
    for name in drop:
        tree["train"].pop(name, None)
    return tree


def _code() -> str:
    from bellm.provenance import code_fingerprint

    return code_fingerprint()


def train_key(cfg: RunConfig, data_sha256: Mapping[str, str], base_sha256: str) -> str:
    """A training: its settings, every input file's sha256 (`bellm.trial.prepare_data`), the held-out files'
    sha256 when they filter the training data (they decide which rows train), the base model's sha256, the code
    and the adapter descriptor's schema (an adapter of another schema is never reused)."""
    from bellm.contract import SCHEMA_VERSION

    return content_key("train", _settings(cfg, RUN_ONLY_TRAIN), dict(data_sha256), _held_out_sha256(cfg),
                       base_sha256, _code(), SCHEMA_VERSION)


def _held_out_sha256(cfg: RunConfig) -> dict[str, str]:
    if not cfg.data.exclude_held_out:
        return {}
    from bellm.io import sha256_file
    from bellm.leakage import held_out_files

    return {portable_path(f): sha256_file(f) for f in held_out_files()}


def train_dir(cfg: RunConfig, data_sha256: Mapping[str, str], base_sha256: str) -> Path:
    return bellm_home() / "train" / train_key(cfg, data_sha256, base_sha256)


def resume_fingerprint(cfg: RunConfig, data_sha256: list[str] | None = None) -> str:
    """What a resume must match (stored in each checkpoint): the settings that change the weights and the training
    files' contents, so checkpoints of an edited data file are never resumed."""
    blob = json.dumps({"config": _settings(cfg, NON_NUMERIC_TRAIN), "data": data_sha256 or []}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def suite_data_sha256(suite: str | Sequence[str]) -> dict[str, str]:
    """{file: sha256} of every data file a suite reads."""
    from bellm.sts import load_suite

    return {portable_path(f): sha for t in load_suite(suite) for f, sha in t.files.items()}


def trial_key(cfg: RunConfig, suites: Sequence[str | Sequence[str]], trained: bool, max_pairs: int | None,
              data_sha256: Mapping[str, str], base_sha256: str) -> str:
    """A trial's result (`bellm.trial.run_trial`): the training's key (untrained: the encoder, base model and
    code), the evaluated suites with their files' sha256, the pair cap. Files go in by `portable_path`, so a sweep
    run from another checkout of the repository finds its finished trials."""
    model = (train_key(cfg, data_sha256, base_sha256) if trained
             else [cfg.encoder_config.model_dump(mode="json"), base_sha256, _code()])
    named = [s if isinstance(s, str) else [portable_path(f) for f in s] for s in suites]  # a name, or its files
    return content_key("trial", model, [[n, suite_data_sha256(s)] for n, s in zip(named, suites, strict=True)],
                       max_pairs)


def eval_key(encoder: EncoderConfig | Path | str, adapter: str | None, dtype: str | None,
             suite: str | Sequence[str], max_pairs: int | None, model_key: str | None) -> str:
    """An evaluation: encoder (incl. dtype, adapter), suite, pair cap, the model's content hash (`model_key`; an
    export, a directory that differs per run, is keyed by its variant name), the suite's files, the code."""
    desc: Any = encoder
    if isinstance(encoder, EncoderConfig):
        desc = encoder.model_dump(mode="json")
    elif isinstance(encoder, Path):
        desc = {"onnx": encoder.name}
    if dtype == "auto":  # keyed by what it resolves to on this machine (bf16 results are not fp32 results)
        from bellm.precision import auto_dtype

        dtype = f"auto:{auto_dtype()}"
    return content_key("evaluate", desc, adapter, dtype, suite, max_pairs, model_key, suite_data_sha256(suite),
                       _code())


def zero_shot_key(cfg: RunConfig, base_sha256: str) -> str:
    """The untrained encoder's fp32 ONNX export: encoder settings, base model, opset, attention op, code."""
    return content_key("zero-shot-onnx", cfg.encoder_config.model_dump(mode="json"), base_sha256,
                       cfg.export.opset, cfg.export.attention_op, _code())
