"""Quality gates: minimums, regressions vs the champion, and failure messages that carry the numbers."""

from __future__ import annotations

import pytest

from bellm.config import GateConfig
from bellm.gates import GateFailed, check_gates, enforce_gates
from bellm.profiles import build_config


def result(avg: float | None = 75.0, **tasks: float | None) -> dict:
    tasks = tasks or {"stsb": 80.0, "sickr": 70.0}
    return {"suite": "x", "model": "m", "tasks": {k: {"spearman": v, "pearson": v, "n": 10, "subsets": {}}
                                                 for k, v in tasks.items()}, "avg": avg}


def test_no_gates_configured_passes_with_no_checks() -> None:
    verdict = check_gates(result(), GateConfig())
    assert verdict.passed and verdict.checks == []
    assert "no gates" in verdict.summary()


def test_min_task_and_min_avg() -> None:
    gates = GateConfig(min_task={"stsb": 79.0, "sickr": 71.0}, min_avg=75.0)
    verdict = check_gates(result(), gates)
    by_name = {c.name: c for c in verdict.checks}
    assert by_name["min_task[stsb]"].passed and by_name["min_task[stsb]"].value == 80.0
    assert not by_name["min_task[sickr]"].passed and by_name["min_task[sickr]"].threshold == 71.0
    assert by_name["min_avg"].passed  # equal to the threshold passes
    assert not verdict.passed and [c.name for c in verdict.failed] == ["min_task[sickr]"]


def test_gated_task_missing_from_result_fails() -> None:
    verdict = check_gates(result(), GateConfig(min_task={"stsb_dev": 10.0}))
    assert not verdict.passed
    assert "not in this evaluation" in verdict.failed[0].detail and "stsb" in verdict.failed[0].detail


def test_undefined_scores_fail_minimums() -> None:
    verdict = check_gates(result(None, stsb=None), GateConfig(min_task={"stsb": 0.0}, min_avg=-100.0))
    assert len(verdict.failed) == 2
    assert all(c.value is None for c in verdict.failed)


def test_regression_vs_champion() -> None:
    champ = result(80.0, stsb=84.0, sickr=76.0)
    mine = result(78.5, stsb=83.5, sickr=73.5)  # avg over common tasks: 80.0 -> 78.5
    ok = check_gates(mine, GateConfig(max_regression=1.5), champ)
    assert ok.passed and ok.checks[0].value == pytest.approx(1.5)
    bad = check_gates(mine, GateConfig(max_regression=1.0, max_task_regression=2.0), champ)
    assert {c.name for c in bad.failed} == {"max_regression[avg]", "max_regression[sickr]"}
    assert {c.name for c in bad.checks} == {"max_regression[avg]", "max_regression[stsb]", "max_regression[sickr]"}


def test_improvement_passes_regression_and_first_run_skips_it() -> None:
    champ = result(70.0, stsb=70.0, sickr=70.0)
    assert check_gates(result(), GateConfig(max_regression=0.0), champ).passed
    assert check_gates(result(), GateConfig(max_regression=0.0), None).checks == []


def test_regression_uses_common_tasks_and_registry_metrics_layout() -> None:
    champ_metrics = {"trained": result(60.0, stsb=81.0, sickr=70.0, sts12=30.0), "zero_shot": result()}
    verdict = check_gates(result(), GateConfig(max_regression=0.4), champ_metrics)
    # common tasks stsb+sickr: champion 75.5 vs this run 75.0 (sts12 dragging champion's avg is ignored)
    assert verdict.checks[0].value == pytest.approx(0.5) and not verdict.passed


def test_champion_without_common_tasks_is_not_compared_and_says_so() -> None:
    """A champion promoted before decisions moved to dev data (issue 26) has none of this run's decision tasks:
    its other numbers must not decide, and the verdict says that nothing was compared (issue 26)."""
    verdict = check_gates(result(), GateConfig(max_regression=1.0), result(80.0, stsb_dev=80.0))
    (check,) = verdict.checks
    assert verdict.passed and check.value is None and "not compared" in check.detail and "stsb_dev" in check.detail


def test_enforce_raises_with_every_failed_check_and_numbers() -> None:
    gates = GateConfig(min_task={"stsb": 85.0, "sickr": 75.5}, min_avg=60.0)
    with pytest.raises(GateFailed) as err:
        enforce_gates(result(), gates)
    msg = str(err.value)
    assert "2 quality gate(s) failed" in msg
    assert "min_task[stsb]: 80.00 >= 85.00 FAILED" in msg
    assert "min_task[sickr]: 70.00 >= 75.50 FAILED" in msg
    assert "min_avg" not in msg
    assert len(err.value.verdict.failed) == 2
    assert enforce_gates(result(), GateConfig(min_avg=60.0)).passed


def test_gates_come_from_the_run_config() -> None:
    cfg = build_config(overrides=["eval.gates.min_avg=70", 'eval.gates.min_task={"stsb_dev": 75}',
                                  "eval.gates.max_task_regression=2"])
    assert cfg.eval.gates.min_avg == 70 and cfg.eval.gates.min_task == {"stsb_dev": 75.0}
    assert cfg.eval.gates.max_task_regression == 2.0
    assert check_gates(result(), cfg.eval.gates).failed[0].name == "min_task[stsb_dev]"


def test_verdict_to_dict_is_json_ready() -> None:
    d = check_gates(result(), GateConfig(min_avg=80.0)).to_dict()
    assert d == {"passed": False, "checks": [{"name": "min_avg", "value": 75.0, "threshold": 80.0, "passed": False,
                                               "detail": ""}]}


def test_smoke_results_are_not_compared_with_a_full_champion() -> None:
    smoke = dict(result(), max_pairs=48)
    verdict = check_gates(smoke, GateConfig(max_regression=5.0), result(10.0, stsb=10.0, sickr=10.0))
    assert not verdict.passed and "max_pairs 48 here vs None" in verdict.failed[0].detail
