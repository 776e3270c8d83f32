"""Ablation of BeLLM's backward dependency: a k × pooling grid, paired bootstrap CIs, table and plot.

Pure functions; the sweep itself (train → evaluate per trial, cached and resumable) is the
`bellm-ablation` flow. Each trial's per-pair cosines on the table tasks are kept so that the difference
to the k=0 baseline with the same pooling can be bootstrapped *paired*: the same resampled pairs score
both models, which removes the between-pair variance that unpaired intervals would carry.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bellm.errors import InputError
from bellm.sts import TASK_LABELS


class AblationConfig(BaseModel):
    """The sweep: a grid over k and pooling on one base config, and the per-trial budget."""

    model_config = ConfigDict(extra="forbid")

    ks: list[int] = Field(default_factory=lambda: [0, 1, 2, 4, 8], description="bidirectional_layers values")
    poolings: list[str] = Field(default_factory=lambda: ["last", "mean"])
    steps: int = Field(40, ge=1, description="training steps per trial (same for every trial)")
    selection_suite: str = Field("gate", description="suite for model selection (STS-B dev)")
    table_suite: str | list[str] = Field("full", description="suite for the table (tasks or 'full')")
    max_eval_pairs: int | None = Field(None, ge=1, description="cap pairs per task (budget)")
    zero_shot: bool = Field(True, description="also evaluate the untrained grid (the paper's degradation curve)")
    train: bool = Field(True, description="train each trial; False = zero-shot curve only")
    bootstrap: int = Field(1000, ge=100)
    seed: int = 0


@dataclass(frozen=True)
class Trial:
    k: int
    pooling: str

    @property
    def name(self) -> str:
        return f"k{self.k}-{self.pooling}"


def grid(cfg: AblationConfig) -> list[Trial]:
    """Every (k, pooling); k=0 first so each pooling has its baseline."""
    if 0 not in cfg.ks:
        raise InputError("the ablation grid needs k=0: it is the baseline every trial is compared with")
    return [Trial(k, p) for p in cfg.poolings for k in sorted(set(cfg.ks))]


def _spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman x100 via ranks (average ranks for ties), vectorised for bootstrap speed."""
    from scipy.stats import rankdata

    rp, rg = rankdata(pred), rankdata(gold)
    rp, rg = rp - rp.mean(), rg - rg.mean()
    denom = np.sqrt((rp * rp).sum() * (rg * rg).sum())
    return float(100.0 * (rp * rg).sum() / denom) if denom > 0 else float("nan")


def paired_bootstrap(
    trial: Mapping[str, Sequence[float]],
    base: Mapping[str, Sequence[float]],
    gold: Mapping[str, Sequence[float]],
    n: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per task and for the task average: Δ Spearman (trial − base) x100 with a 95% percentile interval.

    Pairs are resampled with replacement within each task (stratified), the same indices for both models.
    """
    rng = np.random.default_rng(seed)
    tasks = [t for t in gold if t in trial and t in base]
    if not tasks:
        raise ValueError("no common task to compare")
    deltas = {t: np.empty(n) for t in tasks}
    point: dict[str, float] = {}
    for t in tasks:
        g, a, b = (np.asarray(x, dtype=np.float64) for x in (gold[t], trial[t], base[t]))
        if not len(g) == len(a) == len(b):
            raise ValueError(f"{t}: pair counts differ ({len(g)}, {len(a)}, {len(b)})")
        point[t] = _spearman(a, g) - _spearman(b, g)
        for i in range(n):
            idx = rng.integers(0, len(g), len(g))
            deltas[t][i] = _spearman(a[idx], g[idx]) - _spearman(b[idx], g[idx])
    out = {t: _interval(point[t], deltas[t]) for t in tasks}
    out["avg"] = _interval(float(np.mean([point[t] for t in tasks])), np.mean([deltas[t] for t in tasks], axis=0))
    return out


def bootstrap_all(trials: dict[str, dict[str, Any]], n: int, seed: int) -> dict[str, Any]:
    """CIs of Δ vs the k=0 trial with the same pooling, for trained and zero-shot trials."""
    cis: dict[str, Any] = {}
    for key in ("trained", "zero_shot"):
        for name, t in trials.items():
            raw, base_name = t.get(f"{key}_raw"), f"k0-{t['pooling']}"
            base = trials.get(base_name, {}).get(f"{key}_raw")
            if raw is None or base is None or t["k"] == 0:
                continue
            cis[f"{key}:{name}"] = paired_bootstrap(raw["cosines"], base["cosines"], raw["gold"], n, seed)
    return cis


def conclusion(rows: list[dict[str, Any]]) -> list[str]:
    """Plain-language lines: which trials differ significantly from k=0, in which direction."""
    lines = []
    for r in rows:
        if r.get("significant") is None:
            continue
        verdict = (
            "significantly better than"
            if r["significant"] == "yes" and r["delta_vs_k0"] > 0
            else "significantly worse than"
            if r["significant"] == "yes"
            else "not distinguishable from"
        )
        lines.append(f"- k={r['k']}, {r['pooling']}: Δ avg {r['delta_vs_k0']:+.2f} {r['ci95']} → {verdict} k=0")
    return lines


def _interval(point: float, samples: np.ndarray) -> dict[str, float]:
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return {
        "delta": round(point, 3),
        "lo": round(float(lo), 3),
        "hi": round(float(hi), 3),
        "significant": bool(lo > 0 or hi < 0),
    }


def table_rows(
    trials: Mapping[str, Mapping[str, Any]],
    cis: Mapping[str, Mapping[str, Any]],
    key: str = "trained",
) -> list[dict[str, Any]]:
    """One row per trial: selection score, table avg, Δ vs k=0 with its 95% CI, and a significance mark."""
    rows = []
    for name, t in trials.items():
        res = t.get(key)
        if res is None:
            continue
        ci = cis.get(f"{key}:{name}", {}).get("avg")
        sel = t.get(f"{key}_selection") or {}
        rows.append(
            {
                "trial": name,
                "k": t["k"],
                "pooling": t["pooling"],
                "dev": _sp(sel, "stsb_dev"),
                **{TASK_LABELS.get(task, task): v.get("spearman") for task, v in res["tasks"].items()},
                "avg": res.get("avg"),
                "delta_vs_k0": None if ci is None else ci["delta"],
                "ci95": None if ci is None else f"[{ci['lo']:+.2f}, {ci['hi']:+.2f}]",
                "significant": None if ci is None else ("yes" if ci["significant"] else "no"),
            }
        )
    return rows


def _sp(result: Mapping[str, Any], task: str) -> float | None:
    return (result.get("tasks", {}).get(task) or {}).get("spearman")


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(no trials)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def plot(
    trials: Mapping[str, Mapping[str, Any]], cis: Mapping[str, Mapping[str, Any]], path: str, title: str = ""
) -> None:
    """Spearman (table avg) vs k, one line per pooling, error bars = the paired 95% CI of Δ vs k=0
    placed around each point; trained solid, zero-shot dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ks = sorted({int(t["k"]) for t in trials.values()})
    for key, style in (("trained", "-o"), ("zero_shot", "--s")):
        by_pool: dict[str, list[tuple[int, float, float, float]]] = {}
        for name, t in trials.items():
            res = t.get(key)
            if res is None or res.get("avg") is None:
                continue
            ci = (cis.get(f"{key}:{name}") or {}).get("avg")
            lo = hi = 0.0
            if ci is not None:
                lo, hi = ci["delta"] - ci["lo"], ci["hi"] - ci["delta"]
            by_pool.setdefault(t["pooling"], []).append((t["k"], res["avg"], lo, hi))
        for pooling, pts in sorted(by_pool.items()):
            pts.sort()
            xs = [ks.index(p[0]) for p in pts]  # categorical k axis shared by all lines
            ax.errorbar(
                xs,
                [p[1] for p in pts],
                yerr=[[p[2] for p in pts], [p[3] for p in pts]],
                fmt=style,
                capsize=3,
                label=f"{pooling} ({key.replace('_', '-')})",
            )
    ax.set_xticks(range(len(ks)), [str(k) for k in ks])
    ax.set_xlabel("k (last layers made bidirectional)")
    ax.set_ylabel("Spearman x100 (table avg)")
    ax.set_title(title or "BeLLM ablation: backward dependency vs k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
