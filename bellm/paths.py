"""Where bellm keeps state: one home directory (`BELLM_HOME`, default `<repo>/.bellm`) and the data in the repo."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
STS_DIR = DATA_DIR / "sts"
NLI_DIR = DATA_DIR / "nli"


def bellm_home() -> Path:
    """State and caches root. Read at call time so tests can point it elsewhere."""
    env = os.environ.get("BELLM_HOME")
    home = Path(env) if env else REPO_ROOT / ".bellm"
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir(name: str) -> Path:
    d = bellm_home() / "cache" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def artifacts_dir() -> Path:
    env = os.environ.get("BELLM_ARTIFACTS")
    return Path(env) if env else REPO_ROOT / "artifacts"
