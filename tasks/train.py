"""The training task: `bellm.trial.train_cached` (LoRA + AnglE), cached and resumable by the library's key."""

from __future__ import annotations

import secrets
from typing import Any

from bellm.config import RunConfig
from bellm.keys import train_dir, train_key
from bellm.trial import is_trained, train_cached
from bellm_app.tasks.common import retrying_task


def _cache_key(context: Any, params: dict[str, Any]) -> str:
    """`bellm.keys.train_key` while the trained adapter is on disk; when it was deleted, a one-off key, so the
    cached result (which points at the missing directory) is not reused and training runs again."""
    args = params["cfg"], params["data_sha256"], params["base_sha256"]
    return train_key(*args) if is_trained(train_dir(*args)) else f"{train_key(*args)}-rebuild-{secrets.token_hex(8)}"


@retrying_task("train", cache_key_fn=_cache_key, persist_result=True)
def train_adapter(cfg: RunConfig, data_sha256: dict[str, str], base_sha256: str) -> dict[str, Any]:
    """Train into `$BELLM_HOME/train/<train_key>/`, the directory `bellm sweep` and the ablation use for the
    same configuration: a killed flow re-run resumes from its checkpoints, a finished training is reused."""
    return train_cached(cfg, data_sha256, base_sha256)


@retrying_task("resolve-model")
def resolve_model(source: str) -> dict[str, str]:
    """Resolve (and, the first time, convert) the base model; its sha256 keys every cache downstream."""
    from bellm.models import resolve_source

    res = resolve_source(source)
    return {"source": res.source, "path": res.path, "kind": res.kind, "sha256": res.sha256}
