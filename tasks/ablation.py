"""Ablation trial task: one (k, pooling) configuration through `bellm.trial.run_trial` (trained on a fixed budget,
or zero-shot), evaluated for selection and for the table. Cached by `bellm.keys.trial_key`, so an interrupted
sweep resumes with only the missing trials; the training itself is the library's, shared with `bellm run` and
`bellm sweep` (a half-trained trial resumes from its checkpoints). Where it runs (the flow's process, a Dask or
Ray worker) and with how many threads changes neither its cache key nor its numbers (beyond float rounding where
the frozen-prefix cache, `bellm.frozen_prefix`, computed a sentence's states in an earlier trial's batch)."""

from __future__ import annotations

import time
from typing import Any

from bellm.ablation import trial_config
from bellm.config import PREFIX_CACHE_GB, RunConfig
from bellm.isolation import trial_scope, worker_identity
from bellm.keys import trial_key
from bellm_app.tasks.common import retrying_task


def _key(context: Any, p: dict[str, Any]) -> str:
    a = p["ablation"]
    return trial_key(trial_config(p["base"], p["k"], p["pooling"], a["steps"]),
                     [a["selection_suite"], a["table_suite"]], p["trained"], a.get("max_eval_pairs"),
                     p["data_sha256"], p["base_sha256"])


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
    from bellm.trial import run_trial as engine

    t0 = time.perf_counter()
    cfg = trial_config(base, k, pooling, ablation["steps"])
    with trial_scope(cfg.train.seed, threads):
        res = engine(cfg, [ablation["selection_suite"], ablation["table_suite"]], trained=trained,
                     max_pairs=ablation.get("max_eval_pairs"), data_sha256=data_sha256, base=base_sha256,
                     prefix_cache_gb=ablation.get("prefix_cache_gb", PREFIX_CACHE_GB))
    (selection, table), scores = res.results, res.scores[1]
    return {
        "k": k,
        "pooling": pooling,
        "trained": trained,
        "result": table,
        "selection": selection,
        "cosines": {t: s.cosine.astype(float).round(6).tolist() for t, s in scores.items()},
        "gold": {t: s.gold.astype(float).tolist() for t, s in scores.items()},
        "train": {k: res.train[k] for k in ("steps", "final_loss", "seconds", "resumed_from")} if trained else {},
        "worker": worker_identity(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
