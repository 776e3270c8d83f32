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

    if "bellm.prefix" in sys.modules:
        sys.modules["bellm.prefix"].disable()


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


# Test files by measured cost, heaviest first (seconds of one quiet `pytest --durations=0` run, summed per file;
# BENCHMARKS.md "The test suite (CI)"). `make test` runs them in this order (`--no-loadscope-reorder`): xdist's default
# orders files by *test count*, which put the one-test files that take minutes (the real-model export, the
# deployment) last, so one worker ran them alone while the other sat idle. Unlisted files follow, in
# collection order.
HEAVY_FIRST: tuple[str, ...] = (
    "test_scale.py", "test_export_real.py", "test_deployment.py", "test_export.py", "test_ablation.py",
    "test_flow.py", "test_training_resume.py", "test_export_invariance.py", "test_training.py",
    "test_baseline_minilm.py", "test_export_optimize.py", "test_training_ddp.py", "test_serve.py",
    "test_cli_run.py", "test_sweep.py", "test_cli_adapter.py", "test_keep_layers.py", "test_export_cli.py",
    "test_export_share.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(HEAVY_FIRST)))  # stable: file order kept within a rank
