"""Where bellm keeps state: one home directory for caches (`BELLM_HOME`), the run registry (`BELLM_ARTIFACTS`)
and the benchmark/training data (`BELLM_DATA`).

In a source checkout (the package sits next to `pyproject.toml`) the defaults are `<repo>/.bellm`,
`<repo>/artifacts` and `<repo>/data`. Installed as a wheel they must not point into site-packages: the
home defaults to the user cache directory (`$XDG_CACHE_HOME/bellm`, else `~/.cache/bellm`), and the
registry and data to `./artifacts` and `./data` in the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "bellm" / "paths.py").is_file()


def _default_data_dir() -> Path:
    env = os.environ.get("BELLM_DATA")
    if env:
        return Path(env)
    return REPO_ROOT / "data" if IN_CHECKOUT else Path.cwd() / "data"


DATA_DIR = _default_data_dir()
STS_DIR = DATA_DIR / "sts"
NLI_DIR = DATA_DIR / "nli"


def portable_path(path: str | Path) -> str:
    """A file as it goes into cache keys and results: relative to the repository when inside it (posix), else
    absolute. The same file then has the same name in every checkout, so caches and results carry over. A hub
    dataset spec (`hf:<id>...`) is not a path and is kept as given."""
    if str(path).startswith("hf:"):
        return str(path)
    p = Path(path).resolve()
    try:
        return p.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(p)


def user_cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bellm"


def bellm_home() -> Path:
    """State and caches root. Read at call time so tests can point it elsewhere."""
    env = os.environ.get("BELLM_HOME")
    home = Path(env) if env else (REPO_ROOT / ".bellm" if IN_CHECKOUT else user_cache_dir())
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir(name: str) -> Path:
    d = bellm_home() / "cache" / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def artifacts_dir() -> Path:
    env = os.environ.get("BELLM_ARTIFACTS")
    if env:
        return Path(env)
    return REPO_ROOT / "artifacts" if IN_CHECKOUT else Path.cwd() / "artifacts"
