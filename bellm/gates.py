"""Quality gates: pure checks of an evaluation result against `GateConfig` and the champion.

`check_gates` returns every check with its number, threshold and outcome; `enforce_gates` raises
`GateFailed` naming each failed check, so a Prefect flow run ends Failed before export or champion
promotion, and `bellm eval` exits 1. In the flow and the registry the result checked is the run's decision
result (development splits only, `eval.gate_suite`; test splits are reported, never decide: `bellm.splits`).
A score that could not be computed (None/NaN, e.g. a collapsed model whose cosines are all equal) or a gated
task missing from the result fails its check: a gate must never pass by omission. The one exception, stated
in the verdict: a champion that has no score on any of the run's decision tasks (`NOT_COMPARED`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bellm.config import GateConfig


@dataclass(frozen=True)
class GateCheck:
    """One check. For minimums `value >= threshold`; for regressions `value` is the drop (points) and
    passes when `value <= threshold`."""

    name: str
    value: float | None
    threshold: float
    passed: bool
    detail: str = ""

    def line(self) -> str:
        shown = "n/a" if self.value is None else f"{self.value:.2f}"
        op = "<=" if self.name.startswith("max_") else ">="
        verdict = "ok" if self.passed else "FAILED"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.name}: {shown} {op} {self.threshold:.2f} {verdict}{extra}"


@dataclass(frozen=True)
class GateVerdict:
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if not self.checks:
            return "no gates configured"
        head = "all gates passed" if self.passed else f"{len(self.failed)} of {len(self.checks)} gate(s) failed"
        return head + ":\n" + "\n".join(f"  {c.line()}" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [asdict(c) for c in self.checks]}


class GateFailed(Exception):
    """The model did not pass its quality gates; the message names every failed check with numbers."""

    def __init__(self, verdict: GateVerdict) -> None:
        self.verdict = verdict
        lines = "\n".join(f"  {c.line()}" for c in verdict.failed)
        super().__init__(f"{len(verdict.failed)} quality gate(s) failed:\n{lines}")


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def result_of(obj: Any) -> Any:
    """A result, also when given a registry metrics.json (`{"trained": result, ...}`); None stays None."""
    if isinstance(obj, Mapping) and "tasks" not in obj and isinstance(obj.get("trained"), Mapping):
        return obj["trained"]
    return obj


def _spearmans(result: dict[str, Any]) -> dict[str, float | None]:
    return {k: _num(v.get("spearman")) for k, v in result.get("tasks", {}).items()}


def _minimum(name: str, value: float | None, threshold: float, missing: str = "") -> GateCheck:
    if value is None:
        return GateCheck(name, None, threshold, False, missing or "score undefined (constant or NaN predictions)")
    return GateCheck(name, value, threshold, value >= threshold)


def _regression(name: str, current: float | None, best: float | None, limit: float) -> GateCheck:
    if current is None:
        return GateCheck(name, None, limit, False, "this run's score is undefined")
    if best is None:
        return GateCheck(name, None, limit, False, "champion score is undefined")
    drop = best - current
    return GateCheck(name, drop, limit, drop <= limit, f"champion {best:.2f} -> this run {current:.2f}")


# A champion with none of this run's decision tasks (promoted on test averages before issue 26) cannot be compared
# on dev data, and its test numbers must not decide: the check passes, and says so (recorded in the manifest).
NOT_COMPARED = ("not compared: the champion has no score on this run's decision set ({mine}; champion has: {theirs}); "
                "promoted on the absolute dev gates only")


def check_gates(result: dict[str, Any], gates: GateConfig, champion: dict[str, Any] | None = None) -> GateVerdict:
    """Every configured check on `result`, the run's *decision* result (`eval.gate_suite`: dev splits only).

    Regressions are skipped when there is no champion yet (first run), and compare only the tasks of `result`
    that the champion also has (the avg over those tasks), so a champion's test numbers never enter. A champion
    without any of them passes the regression check with a `not compared` detail (`NOT_COMPARED`)."""
    result = result_of(result)
    mine = _spearmans(result)
    checks: list[GateCheck] = []
    for task, threshold in gates.min_task.items():
        missing = "" if task in mine else f"task {task!r} not in this evaluation (has: {', '.join(mine) or 'none'})"
        checks.append(_minimum(f"min_task[{task}]", mine.get(task), threshold, missing))
    if gates.min_avg is not None:
        checks.append(_minimum("min_avg", _num(result.get("avg")), gates.min_avg))
    wants_regression = gates.max_regression is not None or gates.max_task_regression is not None
    if champion is None or not wants_regression:
        return GateVerdict(checks)
    champ = result_of(champion)
    theirs = _spearmans(champ)
    common = [t for t in mine if t in theirs]
    limit = float(gates.max_regression if gates.max_regression is not None else gates.max_task_regression)  # type: ignore[arg-type]
    if result.get("max_pairs") != champ.get("max_pairs"):
        checks.append(GateCheck("max_regression[avg]", None, limit, False, "not comparable: max_pairs "
                                f"{result.get('max_pairs')} here vs {champ.get('max_pairs')} for the champion"))
        return GateVerdict(checks)
    if not common:  # a champion promoted before decisions moved to dev data (issue 26): nothing to compare
        checks.append(GateCheck("max_regression[avg]", None, limit, True, NOT_COMPARED.format(
            mine=", ".join(mine) or "none", theirs=", ".join(theirs) or "none")))
        return GateVerdict(checks)
    lacking = [t for t in mine if t not in theirs]
    if gates.max_regression is not None:
        def mean(scores: dict[str, float | None]) -> float | None:
            vals = [scores[t] for t in common]
            return None if any(v is None for v in vals) else sum(vals) / len(vals)  # type: ignore[arg-type, misc]

        check = _regression("max_regression[avg]", mean(mine), mean(theirs), gates.max_regression)
        if lacking:  # say what was compared: the champion lacks some of this run's decision tasks
            check = replace(check, detail=f"{check.detail}; compared on {', '.join(common)} (the champion has no "
                            f"{', '.join(lacking)})")
        checks.append(check)
    if gates.max_task_regression is not None:
        for task in common:
            checks.append(_regression(f"max_regression[{task}]", mine[task], theirs[task], gates.max_task_regression))
    return GateVerdict(checks)


def enforce_gates(
    result: dict[str, Any], gates: GateConfig, champion: dict[str, Any] | None = None
) -> GateVerdict:
    """`check_gates`, raising `GateFailed` if any check failed."""
    verdict = check_gates(result, gates, champion)
    if not verdict.passed:
        raise GateFailed(verdict)
    return verdict
