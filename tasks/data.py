"""Data preparation: validate every input file once (clear errors up front) and hash it."""

from __future__ import annotations

from typing import Any

from prefect import task

from bellm.config import ConfigError, RunConfig
from bellm.data import load_pairs, load_triplets
from bellm.paths import portable_path


@task(name="prepare-data", retries=0)
def prepare_data(cfg: RunConfig) -> dict[str, Any]:
    """Read and validate the training and dev files; return {path: sha256} plus row counts.

    A bad file fails here, naming file, line and reason, before any model is loaded. Paths are portable
    (repo-relative): the map enters training and ablation cache keys, which must not depend on the checkout.
    """
    loaded = [(spec, load_pairs(spec, cfg.data.max_train_pairs)) for spec in cfg.data.train_pairs]
    loaded += [(spec, load_triplets(spec, cfg.data.max_train_triplets)) for spec in cfg.data.train_triplets]
    loaded.append((cfg.data.dev_pairs, load_pairs(cfg.data.dev_pairs)))
    files = {portable_path(spec): data.sha256 for spec, data in loaded}
    rows = {portable_path(spec): len(data) for spec, data in loaded}
    if not cfg.data.train_pairs and not cfg.data.train_triplets:
        raise ConfigError("data: no training files (set data.train_pairs and/or data.train_triplets)")
    return {"sha256": files, "rows": rows}
