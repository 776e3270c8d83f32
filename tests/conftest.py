"""Shared fixtures. Fast tests use a tiny randomly initialised LLaMA with the real SmolLM2 tokenizer;
slow tests (`-m slow`) use the real embedded model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Subprocess flows start an ephemeral Prefect server: 20 s (Prefect's default) is too short on a loaded CI box.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
# `make test` runs two pytest-xdist workers on CI's two cores: one OpenMP thread per worker (and per process a
# test starts), since two workers x two threads oversubscribe the cores and OpenMP barriers then stall.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@pytest.fixture(autouse=True)
def _no_prefix_cache_after_a_test():
    """The frozen-prefix cache is process-global and stays on after an in-process sweep or ablation (by design:
    the next trial reuses it). Between tests it must not: a later test in the same worker would encode through
    it (test_prefix counts misses; test_encoder compares bits)."""
    yield
    import sys

    if "bellm.frozen_prefix" in sys.modules:
        sys.modules["bellm.frozen_prefix"].disable()


@pytest.fixture(scope="session", autouse=True)
def _trace_each_tiny_encoder_once():
    """Export tests trace the same tiny encoders again and again (~14 s each); trace each one once per worker
    (`export_helpers.memoized`). The real model is traced every time."""
    from export_helpers import memoized

    import bellm.export.api as api

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "trace", memoized(api.trace))
        yield


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The real embedded model, converted once to safetensors (cached in $BELLM_HOME)."""
    from bellm.models import resolve_source

    return Path(resolve_source("smollm2-135m").path)


def make_tiny_model(dest: Path, tokenizer_src: Path, arch: str = "llama", layers: int = 4, seed: int = 0) -> Path:
    """A tiny random decoder of the given family saved as an HF directory with the real tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    kw = dict(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    if arch in ("qwen3",):
        kw["head_dim"] = 16
    cfg = AutoConfig.for_model(arch, **kw)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(dest, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_src / name).exists():
            shutil.copy(tokenizer_src / name, dest / name)
    return dest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"), embedded_dir)


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory, embedded_dir: Path):
    cache: dict[tuple[str, int], Path] = {}

    def factory(arch: str = "llama", layers: int = 4) -> Path:
        key = (arch, layers)
        if key not in cache:
            cache[key] = make_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), embedded_dir, arch, layers)
        return cache[key]

    return factory


# The layers, one folder each (tests/<layer>/): every test gets its folder's marker, so `-m "not app"` etc. select
# by what a test exercises. `app` is the Prefect application (flows, tasks, deployments, a Prefect server).
LAYERS = ("core", "export", "serve", "app")
# Heaviest files first, without a list of names: `make test` hands files to its two workers in collection order
# (`--no-loadscope-reorder`), and a one-test file that takes minutes handed out last leaves one worker idle. A
# file's cost is what this machine measured last time (pytest's cache, written at the end of every run), else an
# estimate from what its tests need: seconds per test by need (nothing / a tiny model or an export / a Prefect
# flow or a process group / the real model), measured on the suite of 2026-11-30 (BENCHMARKS.md).
NEED_SECONDS = (0.5, 5.0, 30.0, 60.0)
DURATIONS_KEY = "bellm/file_seconds"


def _need(item: pytest.Item) -> int:
    if item.get_closest_marker("slow"):
        return 3
    if item.get_closest_marker("app") or item.get_closest_marker("processes"):
        return 2
    uses_model = {"tiny_model_dir", "tiny_model_factory", "embedded_dir"} & set(getattr(item, "fixturenames", ()))
    return 1 if uses_model or item.get_closest_marker("export") else 0


def _file(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # the layer markers must be on before `-m` deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in LAYERS:
            item.add_marker(item.path.parent.name)
    cache = getattr(config, "cache", None)
    measured: dict[str, float] = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    estimate: dict[str, float] = {}
    for item in items:
        estimate[_file(item)] = estimate.get(_file(item), 0.0) + NEED_SECONDS[_need(item)]
    cost = {f: measured.get(f, e) for f, e in estimate.items()}
    items.sort(key=lambda it: -cost[_file(it)])  # stable: the order within a file is kept


_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sum each file's setup + call + teardown seconds (under xdist, the controller receives every worker's)."""
    f = report.nodeid.split("::", 1)[0]
    _seconds[f] = _seconds.get(f, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Record the files' seconds of an unfiltered run (a `-k`/`-m` run measures part of a file)."""
    cfg = session.config
    cache = getattr(cfg, "cache", None)
    if cache is None or hasattr(cfg, "workerinput") or not _seconds or cfg.option.keyword or cfg.option.markexpr:
        return
    cache.set(DURATIONS_KEY, {**cache.get(DURATIONS_KEY, {}), **{f: round(s, 1) for f, s in _seconds.items()}})
