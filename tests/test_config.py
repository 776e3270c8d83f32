from __future__ import annotations

import json
from pathlib import Path

import pytest

from bellm.config import PROFILES, ConfigError, build_config


def test_defaults_and_profiles_validate() -> None:
    for name in PROFILES:
        cfg = build_config(name)
        assert cfg.profile == name
    q = build_config("quick")
    assert q.model.source == "smollm2-135m"
    assert q.encoder.bidirectional_layers == 2 and q.encoder.pooling == "last"


def test_dotted_overrides_parse_json_values() -> None:
    cfg = build_config("quick", ["train.lr=1e-4", "encoder.bidirectional_layers=all", "export.variants=[\"fp32\"]"])
    assert cfg.train.lr == 1e-4
    assert cfg.encoder.bidirectional_layers == "all"
    assert cfg.export.variants == ["fp32"]


def test_dict_overrides_and_file(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"train": {"seed": 7}}))
    cfg = build_config("smoke", {"encoder": {"pooling": "mean"}}, file=f)
    assert cfg.train.seed == 7 and cfg.encoder.pooling == "mean"
    assert cfg.train.max_steps == PROFILES["smoke"]["train"]["max_steps"]


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.lr=-1", "train.lr"),
        ("encoder.pooling=max", "encoder.pooling"),
        ("encoder.prompt=no placeholder", "encoder.prompt"),
        ("train.typo=1", "train.typo"),
        ("nonsense", "key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_config("quick", [override])
    assert needle in str(ei.value)


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        build_config("huge")
