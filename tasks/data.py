"""Data preparation: validate every input file once (clear errors up front) and hash it."""

from __future__ import annotations

from typing import Any

from prefect import task

from bellm.config import ConfigError, RunConfig
from bellm.data import load_pairs, load_triplets


@task(name="prepare-data", retries=0)
def prepare_data(cfg: RunConfig) -> dict[str, Any]:
    """Read and validate the training and dev files; return {path: sha256} plus row counts.

    A bad file fails here, naming file, line and reason, before any model is loaded.
    """
    files: dict[str, str] = {}
    rows: dict[str, int] = {}
    for spec in cfg.data.train_pairs:
        pairs = load_pairs(spec, cfg.data.max_train_pairs)
        files[spec], rows[spec] = pairs.sha256, len(pairs)
    for spec in cfg.data.train_triplets:
        trips = load_triplets(spec, cfg.data.max_train_triplets)
        files[spec], rows[spec] = trips.sha256, len(trips)
    dev = load_pairs(cfg.data.dev_pairs)
    files[cfg.data.dev_pairs], rows[cfg.data.dev_pairs] = dev.sha256, len(dev)
    if not cfg.data.train_pairs and not cfg.data.train_triplets:
        raise ConfigError("data: no training files (set data.train_pairs and/or data.train_triplets)")
    return {"sha256": files, "rows": rows}
