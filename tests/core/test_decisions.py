"""Decisions read development data only (issue 26): the gates' suite, the dev curve's file, the champion's
promotion and regression check, and the export's variant gate; test splits are reported and never decide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bellm.config import ConfigError, EvalConfig, decision_files
from bellm.io import write_json_atomic
from bellm.paths import STS_DIR
from bellm.profiles import PROFILES, build_config
from bellm.registry import champion, new_run, promote, update_manifest
from bellm.splits import is_test_split, refuse_test_splits
from bellm.sts import FULL_TASKS, UNSEEN_TASKS, load_suite, suite_files, unseen_average

GATED = {"eval": {"gates": {"min_task": {"stsb_dev": 60.0}, "max_regression": 1.0}}}


def test_one_home_for_the_test_split_rule() -> None:
    import bellm.sweep

    assert bellm.sweep.refuse_test_splits is refuse_test_splits  # the sweep applies the one rule, no copy of it
    for test in ("data/sts/stsb/test.tsv", "data/sts/sickr/test.tsv", "data/sts/sts12/MSRpar.tsv",
                 "data/nli/fallback_snli_devtest/snli_test_triplets.csv.gz"):
        assert is_test_split(test), test
    for dev in ("data/sts/stsb/dev.tsv", "data/sts/sickr/dev.tsv", "data/sts/stsb/train.tsv",
                "data/nli/fallback_snli_devtest/snli_dev_triplets.csv.gz"):
        assert not is_test_split(dev), dev
    with pytest.raises(ValueError, match="x.gate: .*test.tsv is a test split"):
        refuse_test_splits(["data/sts/stsb/dev.tsv", "data/sts/stsb/test.tsv"], "x.gate")


def test_the_report_suite_is_all_test_and_the_decision_suite_all_dev() -> None:
    full = suite_files("full")
    assert list(full) == list(FULL_TASKS) and all(is_test_split(f) for fs in full.values() for f in fs)
    default = decision_files(EvalConfig().gate_suite)
    assert set(default) == {"stsb_dev", "sickr_dev", "nli_dev"}  # STS-B dev + SICK-R trial + NLI dev
    assert not any(is_test_split(f) for fs in default.values() for f in fs)
    assert {f for fs in default.values() for f in fs} == {
        STS_DIR / "stsb" / "dev.tsv", STS_DIR / "sickr" / "dev.tsv", STS_DIR.parent / "nli" / "dev" / "pairs.tsv"}
    (sick,) = load_suite("sickr_dev")
    assert sick.n == 500 and set(sick.files) == {str(STS_DIR / "sickr" / "dev.tsv")}


@pytest.mark.parametrize("over", [
    "eval.gate_suite=full",
    "eval.gate_suite=stsb",
    'eval.gate_suite=["stsb_dev", "sts13"]',
    f"eval.gate_suite={STS_DIR / 'sickr' / 'test.tsv'}",
    f"data.dev_pairs={STS_DIR / 'stsb' / 'test.tsv'}",
])
def test_a_test_split_is_refused_as_a_decision_set(over: str) -> None:
    with pytest.raises(ConfigError, match="is a test split"):
        build_config("quick", [over])


def test_a_gate_on_a_task_outside_the_decision_set_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"min_task\[stsb\].*not in eval.gate_suite"):
        build_config("quick", ['eval.gates.min_task={"stsb": 80}'])
    assert build_config("quick", ['eval.gates.min_task={"sickr_dev": 60}']).eval.gates.min_task == {"sickr_dev": 60}


def test_every_profile_decides_on_dev_only() -> None:
    for name in PROFILES:
        cfg = build_config(name)
        files = [f for fs in decision_files(cfg.eval.gate_suite).values() for f in fs]
        assert files and not any(is_test_split(f) for f in [*files, cfg.data.dev_pairs]), name


def test_the_export_variant_gate_reads_the_decision_set() -> None:
    from bellm.export.api import DECISION_SUITE

    assert DECISION_SUITE == EvalConfig().gate_suite


def test_unseen_average_is_the_sts12_16_mean() -> None:
    tasks = {t: {"spearman": 70.0 + i} for i, t in enumerate(FULL_TASKS)}
    assert unseen_average(tasks) == pytest.approx(sum(70.0 + i for i in range(len(UNSEEN_TASKS))) / 5)
    assert unseen_average({"stsb": {"spearman": 80.0}}) is None


# ------------------------------------------------------------------------------------------- promotion


def _run(root: Path, test: float, dev: float | None, sickr_dev: float | None = None) -> Any:
    """A passed quick run whose test numbers (`trained`) and dev numbers (`gate`) are set apart."""
    run = new_run(root, "quick", build_config("quick", GATED).model_dump(mode="json"))
    trained = {"avg": test, "max_pairs": None, "suite": "full",
               "tasks": {t: {"spearman": test} for t in FULL_TASKS}}
    metrics: dict[str, Any] = {"trained": trained}
    if dev is not None:
        tasks = {"stsb_dev": {"spearman": dev}, **({"sickr_dev": {"spearman": sickr_dev}} if sickr_dev else {})}
        metrics["gate"] = {"suite": "dev", "max_pairs": None, "tasks": tasks,
                           "data_sha256": {f"data/sts/{t.split('_')[0]}/dev.tsv": "ab" * 32 for t in tasks}}
    write_json_atomic(run.dir / "metrics.json", metrics)
    update_manifest(run, status="passed")
    return run


def test_promotion_and_regression_are_decided_on_dev_never_on_test(tmp_path: Path) -> None:
    a = _run(tmp_path, test=70.0, dev=80.0, sickr_dev=75.0)
    promote(a.id, tmp_path)
    better_on_test = _run(tmp_path, test=90.0, dev=77.0, sickr_dev=75.0)  # dev avg drops 1.5 > 1.0
    with pytest.raises(ValueError, match=r"max_regression\[avg\]"):
        promote(better_on_test.id, tmp_path)
    worse_on_test = _run(tmp_path, test=50.0, dev=80.5, sickr_dev=75.0)
    promote(worse_on_test.id, tmp_path)
    assert champion(tmp_path).id == worse_on_test.id
    man = worse_on_test.manifest
    read = man["decisions"]["promotion"]["data_sha256"]
    assert read and not any(is_test_split(f) for f in read), read


def test_a_champion_without_dev_numbers_is_not_compared_and_the_manifest_says_so(tmp_path: Path) -> None:
    old = _run(tmp_path, test=99.0, dev=None)  # promoted on test averages before issue 26 (no 'gate' result)
    promote(old.id, tmp_path, force=True)
    new = _run(tmp_path, test=60.0, dev=70.0, sickr_dev=65.0)
    promote(new.id, tmp_path)
    assert champion(tmp_path).id == new.id
    (check,) = [c for c in new.manifest["promotion"]["check"]["checks"] if c["name"].startswith("max_regression")]
    assert check["passed"] and check["value"] is None and "not compared" in check["detail"]


def test_a_champion_with_some_dev_numbers_is_compared_on_those(tmp_path: Path) -> None:
    old = _run(tmp_path, test=99.0, dev=72.0)  # the `gate` suite of before: STS-B dev only
    promote(old.id, tmp_path)
    worse = _run(tmp_path, test=99.0, dev=70.0, sickr_dev=90.0)  # its SICK-R dev must not hide the STS-B drop
    with pytest.raises(ValueError, match=r"compared on stsb_dev \(the champion has no sickr_dev\)"):
        promote(worse.id, tmp_path)
    assert champion(tmp_path).id == old.id


def test_a_run_without_a_dev_result_is_not_promoted(tmp_path: Path) -> None:
    run = _run(tmp_path, test=99.0, dev=None)
    with pytest.raises(ValueError, match="no decision result"):
        promote(run.id, tmp_path)
