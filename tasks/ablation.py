"""Ablation trial task: one (k, pooling) configuration trained on a fixed budget (or zero-shot), then
evaluated for selection and for the table. Cached by content, so an interrupted sweep resumes with only
the missing trials (and a half-trained trial resumes from its checkpoints). Where it runs (the flow's
process, a Dask or Ray worker) and with how many threads changes neither its cache key nor its numbers
(beyond float rounding where the frozen-prefix cache, `bellm.prefix`, computed a sentence's states in an
earlier trial's batch)."""

from __future__ import annotations

import logging
import time
from typing import Any

from bellm.config import RunConfig, training_tree
from bellm.isolation import trial_scope, worker_identity
from bellm.provenance import code_fingerprint
from tasks.common import content_key, retrying_task
from tasks.evaluate import suite_data_sha256
from tasks.train import train_dir

log = logging.getLogger(__name__)


def trial_config(base: RunConfig, k: int, pooling: str, steps: int) -> RunConfig:
    """The base config with this trial's k, pooling and the sweep's step budget (same for all trials)."""
    return base.model_copy(
        update={
            "encoder": base.encoder.model_copy(update={"bidirectional_layers": k, "pooling": pooling}),
            "train": base.train.model_copy(
                update={"max_steps": steps, "warmup_steps": min(base.train.warmup_steps, steps)}
            ),
        }
    )


# Sweep-level fields that do not change one trial's result (the trial's seed is in its base config).
# The prefix cache's budget changes what is recomputed, not the numbers (bellm.prefix; tests/test_prefix.py).
_NOT_IN_TRIAL_KEY = ("ks", "poolings", "seeds", "bootstrap", "seed", "zero_shot", "prefix_cache_gb")


def _key(context: Any, p: dict[str, Any]) -> str:
    cfg = trial_config(p["base"], p["k"], p["pooling"], p["ablation"]["steps"])
    abl = {k: v for k, v in p["ablation"].items() if k not in _NOT_IN_TRIAL_KEY}
    return content_key(
        "ablation-trial", training_tree(cfg), abl, p["trained"], p["data_sha256"], p["base_sha256"],
        code_fingerprint(), suite_data_sha256(p["ablation"]["selection_suite"]),
        suite_data_sha256(p["ablation"]["table_suite"]),
    )


@retrying_task("ablation-trial", cache_key_fn=_key, persist_result=True)
def run_trial(
    base: RunConfig,
    ablation: dict[str, Any],
    k: int,
    pooling: str,
    trained: bool,
    data_sha256: dict[str, str],
    base_sha256: str,
    threads: int | None = None,
) -> dict[str, Any]:
    """{k, pooling, result (table suite), selection (dev), cosines/gold per table task, train info, worker}.

    `threads`: this trial's torch thread budget (None: the process's default); not part of the cache key.
    """
    t0 = time.perf_counter()
    cfg = trial_config(base, k, pooling, ablation["steps"])
    with trial_scope(cfg.train.seed, threads):
        out = _trial(cfg, ablation, k, pooling, trained, data_sha256, base_sha256)
    return {**out, "worker": worker_identity(), "seconds": round(time.perf_counter() - t0, 1)}


def _trial(
    cfg: RunConfig,
    ablation: dict[str, Any],
    k: int,
    pooling: str,
    trained: bool,
    data_sha256: dict[str, str],
    base_sha256: str,
) -> dict[str, Any]:
    from bellm import prefix
    from bellm.config import PREFIX_CACHE_GB
    from bellm.evaluation import evaluate, evaluate_with_scores

    prefix.enable(ablation.get("prefix_cache_gb", PREFIX_CACHE_GB))  # stores outlive the trial: the next reuses them
    info: dict[str, Any] = {}
    if trained:
        from bellm.training import load_trained_encoder, train

        # Same directory scheme as the main flow's training: identical configs share (and resume) it.
        res = train(cfg, train_dir(cfg, data_sha256, base_sha256), progress=True, lock_timeout=None)
        info = {
            "steps": res.steps,
            "final_loss": res.final_loss,
            "seconds": round(res.seconds, 1),
            "resumed_from": res.resumed_from,  # a step: this trial was interrupted (e.g. its worker died)
        }
        encoder = load_trained_encoder(res.adapter_dir)
    else:
        from bellm.encoder import load_encoder

        encoder = load_encoder(cfg.encoder_config)
    mp = ablation.get("max_eval_pairs")
    selection = evaluate(encoder, ablation["selection_suite"], max_pairs=mp, batch_size=cfg.eval.batch_size)
    table, scores = evaluate_with_scores(encoder, ablation["table_suite"], max_pairs=mp, batch_size=cfg.eval.batch_size)
    log.info("frozen-prefix cache after trial k=%d %s: %s", k, pooling, prefix.stats())
    return {
        "k": k,
        "pooling": pooling,
        "trained": trained,
        "result": table,
        "selection": selection,
        "cosines": {t: s.cosine.astype(float).round(6).tolist() for t, s in scores.items()},
        "gold": {t: s.gold.astype(float).tolist() for t, s in scores.items()},
        "train": info,
    }
