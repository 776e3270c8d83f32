from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bellm.config import ConfigError
from bellm.profiles import PROFILES, build_config


def test_defaults_and_profiles_validate() -> None:
    for name in PROFILES:
        cfg = build_config(name)
        assert cfg.profile == name
    q = build_config("quick")
    assert q.model.source == "smollm2-135m"
    assert q.encoder.bidirectional_layers == 16 and q.encoder.pooling == "mean" and q.lora.layers == 16
    assert q.train.length_chunks == 4  # length groups (session 9)
    # `standard` is the recipe on the last 12 layers over 416 steps at lr 2e-3 (sessions 6, 8 and 9, docs/recipe.md)
    s = build_config("standard")
    assert (s.train.lr, s.train.max_steps, s.train.schedule) == (2e-3, 416, "cosine") and q.train.lr == 2e-3


@pytest.mark.parametrize(
    ("profile", "trial"),
    [("quick", "nli-mix5k-120-k16-mean-l16-lr2e3-g4"), ("standard", "nli-mix-416-k12-mean-l12-lr2e3-share50-g4")],
)
def test_profiles_train_exactly_as_the_sweep_trials_their_numbers_come_from(profile: str, trial: str) -> None:
    """docs/recipe.md reports the profiles' numbers from the `sweeps/nli.json` trials (issue 26): that holds only
    while each profile's training settings equal its trial's (the dev curve that picks the kept step too)."""
    from bellm.config import training_tree
    from bellm.paths import REPO_ROOT
    from bellm.sweep import SweepSpec, trial_config

    spec = SweepSpec.load(REPO_ROOT / "sweeps" / "nli.json")
    t, p = trial_config(spec, trial), build_config(profile)

    assert t.dev_curve_pairs == p.dev_curve_pairs == 250
    a, b = training_tree(t), training_tree(p)
    for tree in (a, b):  # the two caps enter training only as the one cap compared above
        tree["data"].pop("max_eval_pairs"), tree["train"].pop("eval_max_pairs")
    assert a == b


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


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("key", ["train.lr", "loss.cosine_tau", "eval.gates.min_avg", "eval.gates.min_task"])
def test_non_finite_values_are_rejected(key: str, value: str) -> None:
    """`--set train.lr=Infinity` used to train a NaN adapter and exit 0."""
    item = f"{key}={{\"stsb_dev\": {value}}}" if key.endswith("min_task") else f"{key}={value}"
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        build_config("quick", [item])


def test_profile_cannot_be_relabelled_by_an_override() -> None:
    """`--profile smoke --set profile=quick` made a 2-step smoke run compete as `quick`."""
    with pytest.raises(ConfigError, match="profile"):
        build_config("smoke", ["profile=quick"])
    with pytest.raises(ConfigError, match="profile"):
        build_config("smoke", {"profile": "quick"})
    with pytest.raises(ConfigError, match="profile"):
        build_config("quick", ["profile=anything"])
    assert build_config("smoke", ["profile=smoke"]).profile == "smoke"


def test_config_file_must_be_a_json_object(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('["train.lr=1e-4"]')
    with pytest.raises(ConfigError, match="JSON object"):
        build_config("quick", file=f)
    from bellm.cli import _register, app

    _register()
    for cmd in (["run", "--config", str(f)], ["train", "-o", str(tmp_path / "o"), "--config", str(f)]):
        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 2 and "JSON object" in r.output, r.output


def test_profile_names_are_exactly_the_profiles() -> None:
    from typing import get_args

    from bellm.config import ProfileName
    from bellm.profiles import PROFILE_SUMMARY

    assert set(get_args(ProfileName)) == set(PROFILES) == set(PROFILE_SUMMARY)
    for name in PROFILES:  # every profile that can be promoted has an absolute gate and a regression limit
        gates = build_config(name).eval.gates
        assert name == "smoke" or (gates.min_task and gates.max_regression is not None), name


def test_config_file_errors_name_the_file_and_the_reason(tmp_path: Path) -> None:
    from bellm.profiles import read_config_file

    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"lr": 1e-4,}}')
    with pytest.raises(ConfigError, match=r"bad\.json: cannot read a config file of overrides .*line 1"):
        read_config_file(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"bad\.json: a config file of overrides must be a JSON object, got list"):
        read_config_file(bad)


def test_training_tree_keys_data_by_repo_relative_path(tmp_path) -> None:
    """Cache keys must not depend on where the checkout lies: a data file inside the repository is keyed
    by its relative path (its contents are hashed separately); one outside keeps its own path."""
    from bellm.config import training_tree
    from bellm.paths import REPO_ROOT
    from bellm.profiles import build_config

    outside = str(tmp_path / "pairs.tsv")
    cfg = build_config("quick", {"data.train_pairs": [str(REPO_ROOT / "data/sts/stsb/train.tsv"), outside]})
    data = training_tree(cfg)["data"]
    assert data["train_pairs"] == ["data/sts/stsb/train.tsv", outside]
    assert data["dev_pairs"] == "data/sts/stsb/dev.tsv"
    assert set(training_tree(cfg)) == {"model", "encoder", "lora", "data", "loss", "train"}


def test_a_profile_and_its_sweep_trial_share_one_training_directory() -> None:
    """`standard` trains exactly as its trial in `sweeps/nli.json`: the trial sets its curve's cap
    through `data.max_eval_pairs`, the profile through `train.eval_max_pairs`. One configuration, one training
    (issue 27): `bellm run --profile standard` after the sweep must reuse the trial's training, not train it again."""
    from bellm.keys import train_key
    from bellm.paths import REPO_ROOT
    from bellm.sweep import SweepSpec, trial_config

    spec = SweepSpec.load(REPO_ROOT / "sweeps" / "nli.json")
    data = {"train.tsv": "x"}
    assert train_key(trial_config(spec, "nli-mix-416-k12-mean-l12-lr2e3-share50-g4"), data, "b") == train_key(
        build_config("standard"), data, "b"
    )
    other_curve = build_config("standard", ["train.eval_max_pairs=100"])
    assert train_key(other_curve, data, "b") != train_key(build_config("standard"), data, "b")


def test_sweep_trials_say_their_data_whatever_the_profile_holds() -> None:
    """A trial inherits its profile's data: when `quick` gained the NLI triplets (capped at 5,000), the trials
    named "pairs only" (`sts-*`) and "all triplets" (`nli-mix-*`) silently became the 5k mix. They now say it."""
    from bellm.paths import REPO_ROOT
    from bellm.sweep import SweepSpec, trial_config

    spec = SweepSpec.load(REPO_ROOT / "sweeps" / "nli.json")
    for name in spec.trials:
        cfg = trial_config(spec, name)
        if name.startswith("sts-"):
            assert cfg.data.train_triplets == [], name
        elif name.startswith("nli-mix5k-"):
            assert cfg.data.max_train_triplets == 5000, name
        elif name.startswith("nli-mix-"):
            assert cfg.data.train_triplets and cfg.data.max_train_triplets is None, name
        share = next((int(p[5:]) for p in name.split("-") if p.startswith("share")), None)
        assert cfg.data.pair_share == (share / 100 if share else None), name
        # `nlipairsNk` (session 10): the staged NLI scored pairs join the STS pairs, capped at N thousand rows
        nli_pairs = next((int(p[8:-1]) * 1000 for p in name.split("-") if p.startswith("nlipairs")), None)
        has_nli_pairs = any(p.endswith("nli/train/pairs.tsv.gz") for p in cfg.data.train_pairs)
        assert has_nli_pairs == (nli_pairs is not None), name
        assert cfg.data.max_train_pairs == nli_pairs, name


def test_sweep_trial_names_say_their_model_and_optimiser_settings() -> None:
    """A trial inherits its profile's settings: when `quick` became k = 8 + mean pooling at lr 2e-3, every older
    trial of `sweeps/nli.json` (`nli-mix5k-120`, `nli-mix-640-share50`, ...) silently trained that, and when `quick`
    went to 104 steps the `*-120` trials did. The spec's base pins what a name leaves unsaid (k = 2, last token,
    lr 1e-3, LoRA r 16 on 8 layers, 120 steps, one padded batch a step); each name says the rest, its step count
    (and batch) and length groups (`gN`, `train.length_chunks`, session 9) included."""
    import re

    from bellm.paths import REPO_ROOT
    from bellm.sweep import SweepSpec, trial_config

    spec = SweepSpec.load(REPO_ROOT / "sweeps" / "nli.json")
    poolings = {"meanspan": "mean_span", "mean": "mean", "lms": "last_mean_span"}
    for name in spec.trials:
        cfg = trial_config(spec, name)
        parts = name.split("-")
        k = next((int(m[1]) for p in parts if (m := re.fullmatch(r"k(\d+)", p))), 2)
        lr = next((int(m[1]) * 10.0 ** -int(m[2]) for p in parts if (m := re.fullmatch(r"lr(\d+)e(\d)", p))), 1e-3)
        layers = next((int(m[1]) for p in parts if (m := re.fullmatch(r"l(\d+)", p))), 8)
        r = next((int(m[1]) for p in parts if (m := re.fullmatch(r"r(\d+)", p))), 16)
        batch, steps = next((int(m[1] or 16), int(m[2])) for p in parts if (m := re.fullmatch(r"(?:b(\d+)x)?(\d+)", p)))
        assert (cfg.train.batch_size, cfg.train.max_steps) == (batch, steps), name
        pooling = next((poolings[p] for p in parts if p in poolings), "last")
        assert cfg.encoder.bidirectional_layers == k, name
        assert cfg.encoder.pooling == pooling, name
        assert cfg.train.lr == pytest.approx(lr), name
        assert (cfg.lora.layers, cfg.lora.r) == (layers, r), name
        groups = next((int(m[1]) for p in parts if (m := re.fullmatch(r"g(\d+)", p))), 1)  # train.length_chunks
        assert cfg.train.length_chunks == groups, name
        assert cfg.encoder.prompt == ("none" if "pnone" in parts else "prompteol"), name  # session 10
        assert cfg.loss.ibn_symmetric == ("sym" in parts), name  # session 10
        has_tw = any(t.endswith("para/twitter_url/triplets.csv.gz") for t in cfg.data.train_triplets)
        assert has_tw == ("tw" in parts), name  # session 11: the Twitter URL corpus triplets join the NLI ones
        has_coco = any(t.endswith("para/coco/triplets.csv.gz") for t in cfg.data.train_triplets)
        assert has_coco == ("coco" in parts), name  # session 11: COCO caption triplets join the NLI ones
        seed = next((int(m[1]) for p in parts if (m := re.fullmatch(r"seed(\d+)", p))), 42)
        assert cfg.train.seed == seed, name  # session 11: a rerun with another seed measures the noise
