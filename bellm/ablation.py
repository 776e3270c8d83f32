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
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bellm.config import PREFIX_CACHE_GB, RunConfig
from bellm.errors import InputError
from bellm.sts import TASK_LABELS, unseen_average

UNSEEN_COLUMN = "STS12-16 avg"  # unseen domains (the recipe trains on STS-B / SICK-R train), beside the 7-task avg


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
    seeds: list[int] | None = Field(
        None,
        description="training seeds: every trained trial runs once per seed and Δ vs k=0 is averaged over seeds, "
        "paired per seed (None: the base config's seed)",
    )
    prefix_cache_gb: float = Field(
        PREFIX_CACHE_GB, ge=0,
        description="memory for the frozen-prefix cache shared by the trials of one process (bellm.frozen_prefix; "
        "0: off). Trials differ only above the layers LoRA adapts, so the layers below run once per sentence",
    )
    bootstrap: int = Field(1000, ge=100)
    seed: int = Field(0, description="the bootstrap's resampling seed")

    @field_validator("selection_suite")
    @classmethod
    def _dev_only(cls, v: str) -> str:
        from bellm.splits import refuse_test_splits
        from bellm.sts import suite_files

        for files in suite_files(v).values():
            refuse_test_splits(files, "the ablation's selection_suite")
        return v

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError(f"seeds must be a non-empty list of distinct integers, got {v}")
        return v


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


def trial_config(base: RunConfig, k: int, pooling: str, steps: int) -> RunConfig:
    """The base config with this trial's k, pooling and the sweep's step budget (same for all trials)."""
    enc = base.encoder.model_copy(update={"bidirectional_layers": k, "pooling": pooling})
    train = base.train.model_copy(update={"max_steps": steps, "warmup_steps": min(base.train.warmup_steps, steps)})
    return base.model_copy(update={"encoder": enc, "train": train})


def _spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    """Spearman x100 via ranks (average ranks for ties), vectorised for bootstrap speed."""
    from scipy.stats import rankdata

    rp, rg = rankdata(pred), rankdata(gold)
    rp, rg = rp - rp.mean(), rg - rg.mean()
    denom = np.sqrt((rp * rp).sum() * (rg * rg).sum())
    return float(100.0 * (rp * rg).sum() / denom) if denom > 0 else float("nan")


Cosines = Mapping[str, Sequence[float]]


def _per_seed(x: Cosines | Sequence[Cosines]) -> list[Cosines]:
    return [x] if isinstance(x, Mapping) else list(x)


def paired_bootstrap(
    trial: Cosines | Sequence[Cosines],
    base: Cosines | Sequence[Cosines],
    gold: Mapping[str, Sequence[float]],
    n: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Per task and for the task average: Δ Spearman (trial − base) x100 with a 95% percentile interval.

    `trial` and `base` are one model's cosines per task, or one per training seed (same order): Δ is then
    the mean over seeds of (trial seed s − base seed s). Pairs are resampled with replacement within each
    task (stratified), the same indices for every model and seed, so seed noise is averaged, not resampled.
    """
    trials, bases = _per_seed(trial), _per_seed(base)
    if len(trials) != len(bases) or not trials:
        raise ValueError(f"seed counts differ ({len(trials)} trial, {len(bases)} base)")
    rng = np.random.default_rng(seed)
    tasks = [t for t in gold if all(t in m for m in (*trials, *bases))]
    if not tasks:
        raise ValueError("no common task to compare")
    deltas = {t: np.empty(n) for t in tasks}
    point: dict[str, float] = {}
    by_seed: dict[str, list[float]] = {}
    for t in tasks:
        g = np.asarray(gold[t], dtype=np.float64)
        f64 = [
            (np.asarray(a[t], dtype=np.float64), np.asarray(b[t], dtype=np.float64))
            for a, b in zip(trials, bases, strict=True)
        ]
        for a, b in f64:
            if not len(g) == len(a) == len(b):
                raise ValueError(f"{t}: pair counts differ ({len(g)}, {len(a)}, {len(b)})")
        by_seed[t] = [_spearman(a, g) - _spearman(b, g) for a, b in f64]
        point[t] = float(np.mean(by_seed[t]))
        for i in range(n):
            idx = rng.integers(0, len(g), len(g))
            deltas[t][i] = np.mean([_spearman(a[idx], g[idx]) - _spearman(b[idx], g[idx]) for a, b in f64])
    out: dict[str, dict[str, Any]] = {t: _interval(point[t], deltas[t]) for t in tasks}
    out["avg"] = _interval(float(np.mean([point[t] for t in tasks])), np.mean([deltas[t] for t in tasks], axis=0))
    out["avg"]["by_seed"] = [round(float(np.mean([by_seed[t][s] for t in tasks])), 3) for s in range(len(trials))]
    return out


def _raws(t: Mapping[str, Any], key: str) -> list[Mapping[str, Any]] | None:
    """A trial's raw outputs (cosines, gold) per seed: `<key>_raw` holds one output or a list, one per seed."""
    raw = t.get(f"{key}_raw")
    return None if raw is None else _per_seed(raw)  # type: ignore[arg-type]


def bootstrap_all(trials: dict[str, dict[str, Any]], n: int, seed: int) -> dict[str, Any]:
    """CIs of Δ vs the k=0 trial with the same pooling (and the same seeds), for trained and zero-shot trials."""
    cis: dict[str, Any] = {}
    for key in ("trained", "zero_shot"):
        for name, t in trials.items():
            raws, base = _raws(t, key), _raws(trials.get(f"k0-{t['pooling']}", {}), key)
            if raws is None or base is None or t["k"] == 0:
                continue
            cis[f"{key}:{name}"] = paired_bootstrap(
                [r["cosines"] for r in raws], [b["cosines"] for b in base], raws[0]["gold"], n, seed
            )
    return cis


def mean_over_seeds(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One evaluation result (`tasks.<task>.spearman`, `avg`) from one per seed: the mean of each number,
    with the per-seed averages kept (`by_seed`) so the table shows the spread."""
    tasks = [t for t in results[0]["tasks"] if all(t in r["tasks"] for r in results)]
    avgs = [r.get("avg") for r in results]
    return {
        "tasks": {t: {"spearman": float(np.mean([r["tasks"][t]["spearman"] for r in results]))} for t in tasks},
        "avg": None if None in avgs else float(np.mean(avgs)),
        "by_seed": avgs,
    }


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


def dev_choice(rows: Sequence[Mapping[str, Any]], suite: str = "the selection suite") -> str | None:
    """The trial development data chooses (issue 26): the highest `dev` score (the selection suite, dev splits
    only), with the best trial of any other pooling beside it. The table's test splits are reported, never used
    to choose; None when no trial has a dev score."""
    scored = [r for r in rows if r.get("dev") is not None]
    if not scored:
        return None
    best = max(scored, key=lambda r: r["dev"])
    line = f"- chosen on dev ({suite}): k={best['k']}, {best['pooling']} (dev {best['dev']:.2f}"
    other = [r for r in scored if r["pooling"] != best["pooling"]]
    if other:
        runner = max(other, key=lambda r: r["dev"])
        line += (f"; best {runner['pooling']}: k={runner['k']}, dev {runner['dev']:.2f}, "
                 f"{best['dev'] - runner['dev']:+.2f}")
    return line + "); the table's test columns are reported and did not choose"


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
        row = {
            "trial": name,
            "k": t["k"],
            "pooling": t["pooling"],
            "dev": sel.get("avg") if sel.get("avg") is not None else _sp(sel, "stsb_dev"),  # the selection avg
            **{TASK_LABELS.get(task, task): v.get("spearman") for task, v in res["tasks"].items()},
            "avg": res.get("avg"),
            **({UNSEEN_COLUMN: unseen} if (unseen := unseen_average(res["tasks"])) is not None else {}),
            "delta_vs_k0": None if ci is None else ci["delta"],
            "ci95": None if ci is None else f"[{ci['lo']:+.2f}, {ci['hi']:+.2f}]",
            "significant": None if ci is None else ("yes" if ci["significant"] else "no"),
        }
        if len(res.get("by_seed") or []) > 1:  # several seeds: show each seed's avg and Δ (is the sign stable?)
            row["avg_by_seed"] = " / ".join(_fmt(v) for v in res["by_seed"])
            row["delta_by_seed"] = None if ci is None else " / ".join(f"{v:+.2f}" for v in ci.get("by_seed", []))
        rows.append(row)
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
