"""Data preparation: validate every input file once (clear errors up front) and hash it."""

from __future__ import annotations

from typing import Any

from prefect import task

from bellm import trial
from bellm.config import RunConfig


@task(name="prepare-data", retries=0)
def prepare_data(cfg: RunConfig) -> dict[str, Any]:
    """`bellm.trial.prepare_data`: {path: sha256} plus row counts; a bad file fails here, before any model loads."""
    return trial.prepare_data(cfg)
