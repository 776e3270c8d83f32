"""The one trial engine: configuration → trained once (or reused) or untrained → loaded → evaluated.

`bellm sweep`, the ablation and the main flow's train step all train through `train_cached` into
`$BELLM_HOME/train/<bellm.keys.train_key>/`: one configuration is trained once, whichever command asked first (a
half-trained one resumes). Sweep and ablation only list trials and tabulate `run_trial`'s results."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellm.config import ConfigError, EncoderConfig, RunConfig
from bellm.io import write_json_atomic
from bellm.keys import train_dir
from bellm.paths import portable_path

TRAINED = "trained.json"  # in a training directory: what `train_cached` returns, written when it finished


def prepare_data(cfg: RunConfig) -> dict[str, Any]:
    """Read and validate the training and dev files (a bad one fails here, naming file, line and reason, before
    any model loads); {"sha256": {portable path: sha256}, "rows": {portable path: rows}}."""
    from bellm.data import load_pairs, load_triplets

    if not cfg.data.train_pairs and not cfg.data.train_triplets:
        raise ConfigError("data: no training files (set data.train_pairs and/or data.train_triplets)")
    loaded = [(spec, load_pairs(spec, cfg.data.max_train_pairs)) for spec in cfg.data.train_pairs]
    loaded += [(spec, load_triplets(spec, cfg.data.max_train_triplets)) for spec in cfg.data.train_triplets]
    loaded.append((cfg.data.dev_pairs, load_pairs(cfg.data.dev_pairs)))
    return {"sha256": {portable_path(s): d.sha256 for s, d in loaded},
            "rows": {portable_path(s): len(d) for s, d in loaded}}


def is_trained(out: Path) -> bool:
    return (out / "adapter" / "adapter_config.json").is_file() and (out / TRAINED).is_file()


def train_cached(cfg: RunConfig, data_sha256: Mapping[str, str] | None = None, base: str | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train `cfg` into its one training directory (resuming; waiting while another process trains it), or
    return what the finished training there recorded. `data_sha256`/`base`: hashes the caller already has."""
    data = prepare_data(cfg)["sha256"] if data_sha256 is None else data_sha256
    if base is None:
        from bellm.models import resolve_source

        base = resolve_source(cfg.model.source).sha256
    out = train_dir(cfg, data, base)
    if is_trained(out):
        return json.loads((out / TRAINED).read_text(encoding="utf-8"))
    from bellm.io import sha256_dir
    from bellm.training import train

    t = time.perf_counter()
    res = train(cfg, out, progress=progress, lock_timeout=None)
    info = {
        "adapter_dir": str(res.adapter_dir),
        "adapter_sha256": sha256_dir(res.adapter_dir),
        "steps": res.steps,
        "final_loss": res.final_loss,
        "best_step": res.best_step,
        "best_dev_spearman": res.best_dev_spearman,
        "log": str(res.log_path),
        "resumed_from": res.resumed_from,  # a step: this training was interrupted (e.g. its worker died)
        "seconds": round(time.perf_counter() - t, 3),
    }
    write_json_atomic(out / TRAINED, info)
    return info


def load_for_eval(encoder: EncoderConfig | Path | str, adapter: str | None = None, dtype: str | None = None) -> Any:
    """An encoder to evaluate: a bellm encoder from its config (+ a trained adapter, whose settings must agree),
    an exported ONNX variant directory (a `Path`, run through the torch-free `bellm.runtime.OnnxEncoder`),
    or a named baseline (`minilm`)."""
    if isinstance(encoder, EncoderConfig):
        from bellm.encoder import load_encoder

        return load_encoder(encoder, adapter=adapter, dtype=dtype)
    if isinstance(encoder, Path):
        from bellm.runtime import OnnxEncoder, usable_cpus

        return OnnxEncoder(encoder, threads=usable_cpus())  # the benchmarks' setting (ORT's default: physical cores)
    if encoder == "minilm":
        from bellm.baselines import MiniLMEncoder

        return MiniLMEncoder()
    raise ValueError(f"unknown encoder {encoder!r}: give an EncoderConfig, an export directory (Path) or 'minilm'")


@dataclass
class TrialResult:
    """The training record (empty: untrained), per suite (in order) the result and per-pair scores, and the
    share of the training's frozen-prefix states that came from the process's cache."""

    train: dict[str, Any]
    results: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    prefix_hit_share: float | None = None


def run_trial(cfg: RunConfig, suites: Sequence[str | Sequence[str]], *, trained: bool = True,
              max_pairs: int | None = None, data_sha256: Mapping[str, str] | None = None, base: str | None = None,
              prefix_cache_gb: float = 0.0, progress: bool = True) -> TrialResult:
    """Train (or reuse) `cfg`'s adapter, or take the untrained encoder, and evaluate it on each suite.
    `prefix_cache_gb` > 0: the process's frozen-prefix cache, which the next trial of the base model reuses."""
    from bellm import frozen_prefix
    from bellm.evaluation import evaluate_with_scores

    frozen_prefix.enable(prefix_cache_gb)
    before = frozen_prefix.stats()
    if trained:
        from bellm.training import load_trained_encoder

        info = train_cached(cfg, data_sha256, base, progress)
        encoder = load_trained_encoder(info["adapter_dir"])
    else:
        from bellm.encoder import load_encoder

        info, encoder = {}, load_encoder(cfg.encoder_config)
    share = prefix_share(before, frozen_prefix.stats())
    done = [evaluate_with_scores(encoder, s, max_pairs=max_pairs, batch_size=cfg.eval.batch_size) for s in suites]
    return TrialResult(info, [r for r, _ in done], [s for _, s in done], share)


def prefix_share(before: Mapping[str, int], after: Mapping[str, int]) -> float | None:
    """The share of sentences whose frozen-prefix states came from the cache (None: off or unused): training
    seconds compare only between trials with similar shares (the process's first trial fills the cache)."""
    hits, misses = (max(0, after[k] - before[k]) for k in ("hits", "misses"))
    return round(hits / (hits + misses), 3) if hits + misses else None
