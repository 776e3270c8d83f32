"""The training task: LoRA + AnglE via `bellm.training.train`, cached and resumable by content."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

from bellm.config import RunConfig, training_tree
from bellm.contract import SCHEMA_VERSION
from bellm.paths import bellm_home
from bellm.provenance import code_fingerprint
from tasks.common import content_key, retrying_task


def train_key(cfg: RunConfig, data_sha256: dict[str, str], base_sha256: str) -> str:
    """The training directory and cache key: config sections, every input file's sha256, the base model's
    sha256, the code fingerprint (a code fix is never hidden by a cached adapter) and the descriptor schema
    (an adapter of another schema is never reused)."""
    return content_key("train", training_tree(cfg), data_sha256, base_sha256, code_fingerprint(),
                       SCHEMA_VERSION)


def train_dir(cfg: RunConfig, data_sha256: dict[str, str], base_sha256: str) -> Path:
    """The one training directory of a configuration: `$BELLM_HOME/train/<train_key>` (identical configs share
    and resume it: the main flow and the ablation)."""
    return bellm_home() / "train" / train_key(cfg, data_sha256, base_sha256)


def _cache_key(context: Any, params: dict[str, Any]) -> str:
    """The content key while the trained adapter is on disk; when it was deleted, a one-off key, so the
    cached result (which points at the missing directory) is not reused and training runs again."""
    key = train_key(params["cfg"], params["data_sha256"], params["base_sha256"])
    if not adapter_exists(str(train_dir(params["cfg"], params["data_sha256"], params["base_sha256"]) / "adapter")):
        return f"{key}-rebuild-{secrets.token_hex(8)}"
    return key


@retrying_task("train", cache_key_fn=_cache_key, persist_result=True)
def train_adapter(cfg: RunConfig, data_sha256: dict[str, str], base_sha256: str) -> dict[str, Any]:
    """Train into `$BELLM_HOME/train/<content key>/`: a killed flow re-run resumes from its checkpoints,
    and a finished one with the same config, data and base model is a cache hit."""
    from bellm.io import sha256_dir
    from bellm.training import train

    out = train_dir(cfg, data_sha256, base_sha256)
    t = time.perf_counter()
    # Another flow training the same content key holds the directory's lock: wait, then resume its result.
    result = train(cfg, out, progress=True, lock_timeout=None)
    return {
        "adapter_dir": str(result.adapter_dir),
        "adapter_sha256": sha256_dir(result.adapter_dir),
        "steps": result.steps,
        "final_loss": result.final_loss,
        "log": str(result.log_path),
        "resumed_from": result.resumed_from,
        "seconds": round(time.perf_counter() - t, 3),
    }


@retrying_task("resolve-model")
def resolve_model(source: str) -> dict[str, str]:
    """Resolve (and, the first time, convert) the base model; its sha256 keys every cache downstream."""
    from bellm.models import resolve_source

    res = resolve_source(source)
    return {"source": res.source, "path": res.path, "kind": res.kind, "sha256": res.sha256}


def adapter_exists(path: str) -> bool:
    return (Path(path) / "adapter_config.json").is_file()
