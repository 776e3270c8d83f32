"""Validation at config time: bad values and missing packages fail before any step runs, never after training."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from bellm.config import (
    ConfigError,
    DegenerateConfigWarning,
    EncoderConfig,
    encoder_config,
    missing_requirements,
    preflight,
)
from bellm.profiles import build_config


@pytest.mark.parametrize(
    "override, key",
    [
        ("export.opset=17", "export.opset"),
        ('export.variants=["fp32","bf8"]', "export.variants"),
        ("export.attention_op=sdpa", "export.attention_op"),
        ("encoder.pooling=max", "encoder.pooling"),
        ("encoder.bidirectional_layers=-1", "encoder.bidirectional_layers"),
        ("encoder.prompt={{text}}", "encoder.prompt"),
        ("encoder.source=other", "encoder.source"),
    ],
)
def test_bad_values_fail_at_build(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.split(".")[0]):
        build_config("quick", [override])


def test_degenerate_k_and_pooling_warns_at_config_time() -> None:
    with pytest.warns(DegenerateConfigWarning, match="no effect"):
        build_config("quick", ["encoder.bidirectional_layers=1", "encoder.pooling=last"])


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="needs an environment without datasets")
def test_hub_data_without_datasets_fails_before_training() -> None:
    cfg = build_config("paper", ["eval.baseline=false"])
    with pytest.raises(ConfigError, match="'datasets'.*not installed"):
        preflight(cfg)
    with pytest.raises(ConfigError, match="datasets"):
        preflight(cfg, evaluate=False)


def test_local_data_without_baseline_needs_nothing_more() -> None:
    assert missing_requirements(build_config("quick", ["eval.baseline=false"])) == []


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None,
                    reason="needs an environment without the baseline extra")
def test_baseline_without_its_extra_fails_before_training() -> None:
    with pytest.raises(ConfigError, match="bellm\\[baseline\\]"):
        preflight(build_config("quick"))


def test_run_encoder_config_is_complete() -> None:
    cfg = build_config("smoke", {"model": {"source": "x/y"}, "encoder": {"pooling": "mean"}})
    enc = cfg.encoder_config
    assert enc.source == "x/y" and enc.pooling == "mean" and enc.max_length == 48
    assert enc.model_fields_set >= {"source", "pooling", "bidirectional_layers", "prompt", "max_length"}


def test_encoder_config_from_keywords() -> None:
    c = encoder_config("m", bidirectional_layers="3")  # the CLI's digit string, parsed once, here
    assert c.bidirectional_layers == 3 and c.explicit() == {"source": "m", "bidirectional_layers": 3}
    assert EncoderConfig().model_source == "smollm2-135m"
    with pytest.raises(TypeError, match="unknown encoder setting"):
        encoder_config(None, poolin="mean")
    with pytest.raises(ConfigError, match="pooling"):
        encoder_config(None, pooling="max")


def test_import_error_is_never_retried(tmp_path: Path) -> None:
    from bellm_app.tasks.common import retry_transient

    class State:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def result(self) -> None:
            raise self.exc

    assert retry_transient(None, None, State(ModuleNotFoundError("No module named 'sentence_transformers'"))) is False
    assert retry_transient(None, None, State(ImportError("x"))) is False
    assert retry_transient(None, None, State(OSError("disk busy"))) is True
