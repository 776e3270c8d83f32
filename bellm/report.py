"""Per-run report: `metrics.json`, `report.md` (this run vs champion vs all-MiniLM-L6-v2 vs zero-shot)
and two PNGs (STS-B predicted cosine vs gold, and a bar chart of the tasks).

The table comes from `comparison_rows` (a list of dicts: Prefect's `create_table_artifact`) and
`report_markdown` (Prefect's `create_markdown_artifact`), so a flow publishes exactly what is on disk.
`metrics.json` is `{"trained": result, "zero_shot": result, ...extra}`: the registry layout, so a
flow adds `extra={"onnx": {...}}` and writes nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bellm.gates import result_of
from bellm.io import atomic_path, write_json_atomic, write_text_atomic
from bellm.sts import TASK_LABELS, unseen_average

if TYPE_CHECKING:
    from bellm.evaluation import PairScores
    from bellm.gates import GateVerdict

COLUMNS = ("this run", "champion", "all-MiniLM-L6-v2", "zero-shot")
SCATTER_TASKS = ("stsb", "stsb_dev")


UNSEEN_ROW = "STS12-16 avg (unseen domains)"  # the in-project proxy for domains the recipe did not train on


def _score(result: Mapping[str, Any] | None, task: str) -> float | None:
    if result is None:
        return None
    if task == UNSEEN_ROW:
        value = unseen_average(result.get("tasks", {}))
    else:
        value = result.get("avg") if task == "avg" else result.get("tasks", {}).get(task, {}).get("spearman")
    return None if value is None else round(float(value), 2)


def _columns(trained: Mapping[str, Any], zero_shot: Mapping[str, Any] | None, champion: Mapping[str, Any] | None,
             baseline: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any] | None]:
    return dict(zip(COLUMNS, (trained, result_of(champion), result_of(baseline), result_of(zero_shot)),
                    strict=True))


def comparison_rows(
    trained: Mapping[str, Any],
    zero_shot: Mapping[str, Any] | None = None,
    champion: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per task of `trained` plus "avg" (all its tasks) and, when it has STS12-16, their average
    (`UNSEEN_ROW`: unseen-domain quality beside the in-domain STS-B / SICK-R rows): Spearman x100 per column,
    and the change vs champion."""
    cols = _columns(trained, zero_shot, champion, baseline)
    rows: list[dict[str, Any]] = []
    unseen = [UNSEEN_ROW] if unseen_average(trained.get("tasks", {})) is not None else []
    for task in [*trained.get("tasks", {}), "avg", *unseen]:
        row: dict[str, Any] = {"task": TASK_LABELS.get(task, task)}
        for name, res in cols.items():
            row[name] = _score(res, task)
        mine, best = row["this run"], row["champion"]
        row["vs champion"] = None if mine is None or best is None else round(mine - best, 2)
        rows.append(row)
    return rows


def _cell(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """`comparison_rows` as a GitHub markdown table; columns with no data at all are left out."""
    keys = [k for k in rows[0] if k == "task" or any(r[k] is not None for r in rows)] if rows else []
    out = ["| " + " | ".join(keys) + " |", "|" + "|".join(["---"] + ["---:"] * (len(keys) - 1)) + "|"]
    for r in rows:
        cells = [f"**{r['task']}**" if r["task"] in ("avg", UNSEEN_ROW) else str(r["task"])]
        cells += [_cell(r[k], signed=k == "vs champion") for k in keys[1:]]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def report_markdown(
    trained: Mapping[str, Any],
    zero_shot: Mapping[str, Any] | None = None,
    champion: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    verdict: GateVerdict | None = None,
    images: Mapping[str, str] | None = None,
    title: str = "bellm evaluation",
    decision: Mapping[str, Any] | None = None,
) -> str:
    """The report body: header facts, the comparison table, what decided (`decision`: the dev result the gates
    read), gates, images and data provenance."""
    lines = [f"# {title}", ""]
    lines.append(f"- model fingerprint: `{trained.get('model')}`")
    lines.append(f"- suite: `{trained.get('suite')}`; metric: Spearman x100 of cosine similarity "
                 "(STS12-16: sub-datasets concatenated, SentEval \"all\")")
    if trained.get("max_pairs"):
        lines.append(f"- **smoke run: only the first {trained['max_pairs']} pairs of each task** "
                     "(not comparable with full results)")
    enc = trained.get("encoder")
    if isinstance(enc, Mapping):
        keys = ("base_model", "bidirectional_layers", "pooling", "prompt", "max_length", "adapter_sha256")
        lines.append("- encoder: " + ", ".join(f"{k}={enc[k]!r}" for k in keys if k in enc))
    dd = trained.get("dedupe")
    if isinstance(dd, Mapping):
        lines.append(f"- sentences: {dd.get('sentences')} ({dd.get('unique')} unique, {dd.get('encoded')} encoded "
                     f"now, the rest from cache); {trained.get('seconds')} s")
    lines += ["", markdown_table(comparison_rows(trained, zero_shot, champion, baseline)), ""]
    if unseen_average(trained.get("tasks", {})) is not None:
        lines.append("In domain: STS-B and SICK-R (the recipe trains on their train splits). STS12-16 are domains "
                     "it never trains on: their average is the unseen-domain proxy. Test splits are reported here "
                     "and never decide (gates, promotion and the export's variant gate read dev splits).")
        lines.append("")
    if trained.get("wmean") is not None:
        lines.append(f"wmean variant (sub-dataset Spearmans weighted by pairs) avg: {trained['wmean']:.2f}")
        lines.append("")
    if decision is not None and decision.get("tasks"):
        lines += decision_markdown(decision, result_of(champion))
    if verdict is not None:
        lines += ["## Gates", "", "```", verdict.summary(), "```", ""]
    for caption, name in (images or {}).items():
        lines += [f"![{caption}]({name})", ""]
    shas = trained.get("data_sha256")
    if isinstance(shas, Mapping) and shas:
        lines += ["<details><summary>data files (sha256)</summary>", ""]
        lines += [f"- `{f}` `{s}`" for f, s in shas.items()]
        lines += ["", "</details>", ""]
    return "\n".join(lines)


def decision_markdown(decision: Mapping[str, Any], champion: Mapping[str, Any] | None) -> list[str]:
    """The dev numbers that decided (gates, regression check, promotion), this run beside the champion's."""
    lines = ["## Decided on (dev splits)", "", "| dev task | this run | champion |", "|---|---:|---:|"]
    theirs: list[float | None] = []
    for task in decision["tasks"]:
        best = _score(champion, task)
        theirs.append(best)
        lines.append(f"| {TASK_LABELS.get(task, task)} | {_cell(_score(decision, task))} | {_cell(best)} |")
    champ_avg = None if None in theirs else round(sum(theirs) / len(theirs), 2)  # type: ignore[arg-type]
    lines += [f"| **dev avg** | {_cell(_score(decision, 'avg'))} | {_cell(champ_avg)} |", "",
              "Files read: " + ", ".join(f"`{f}`" for f in decision.get("data_sha256") or {}) + ".", ""]
    return lines


TRAIN_LOG = "train_log.jsonl"  # copied next to the report by the flow; plotted when present


def _pyplot() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    return path


def plot_scatter(scores: PairScores, spearman: float | None, path: Path, label: str = "STS-B test") -> Path:
    """Predicted cosine vs gold score, Spearman in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    try:
        ax.scatter(scores.gold, scores.cosine, s=6, alpha=0.35, linewidths=0)
        ax.set_xlabel("gold similarity score")
        ax.set_ylabel("predicted cosine similarity")
        rho = "n/a" if spearman is None else f"{spearman:.2f}"
        ax.set_title(f"{label}: Spearman {rho} (n={len(scores.gold)})")
        ax.grid(alpha=0.3)
        return _save(fig, path)
    finally:
        plt.close(fig)


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """The training log's records (one per optimizer step); unreadable lines (a killed write) are skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def plot_training(records: list[dict[str, Any]], path: Path) -> Path:
    """Loss per step (raw and a 20-step moving average) and, when logged, dev Spearman per step."""
    plt = _pyplot()
    steps = [r["step"] for r in records]
    loss = np.array([r["loss"] for r in records], dtype=float)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    try:
        return _plot_training(ax, fig, steps, loss, records, path)
    finally:
        plt.close(fig)


def _plot_training(ax: Any, fig: Any, steps: list[int], loss: np.ndarray, records: list[dict[str, Any]],
                   path: Path) -> Path:
    ax.plot(steps, loss, color="0.75", lw=0.8, label="loss")
    w = min(20, len(loss))
    if w > 1:
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="C0", label=f"loss ({w}-step mean)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    dev = [(r["step"], r["dev_spearman"]) for r in records if r.get("dev_spearman") is not None]
    handles, labels = ax.get_legend_handles_labels()
    if dev:
        ax2 = ax.twinx()
        ax2.plot(*zip(*dev, strict=True), color="C3", marker="o", label="dev Spearman ×100")
        ax2.set_ylabel("dev Spearman ×100")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_task_bars(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: Spearman per task (and avg) for each column that has data."""
    plt = _pyplot()
    cols = [c for c in COLUMNS if any(r.get(c) is not None for r in rows)]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 4.2))
    try:
        x = np.arange(len(rows))
        width = 0.8 / max(1, len(cols))
        for i, col in enumerate(cols):
            vals = [np.nan if r.get(col) is None else r[col] for r in rows]
            bars = ax.bar(x + (i - (len(cols) - 1) / 2) * width, vals, width, label=col)
            if col == "this run":
                ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(x, [r["task"].replace(" (unseen domains)", "\n(unseen)") for r in rows])
        ax.set_ylabel("Spearman x100")
        lowest = min([0.0] + [r[c] for r in rows for c in cols if r.get(c) is not None])
        ax.set_ylim(min(0.0, lowest - 5), 100)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=max(1, len(cols)), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title("STS Spearman per task")
        return _save(fig, path)
    finally:
        plt.close(fig)


def metrics_document(
    trained: Mapping[str, Any],
    zero_shot: Mapping[str, Any] | None = None,
    champion: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metrics.json object: `{"trained", "zero_shot"?, "champion"?, "baseline"?, **extra}`."""
    doc: dict[str, Any] = {"trained": dict(trained)}
    for key, value in (("zero_shot", zero_shot), ("champion", result_of(champion)), ("baseline", baseline)):
        if value is not None:
            doc[key] = dict(value)
    for key, value in (extra or {}).items():
        if key in doc:
            raise ValueError(f"extra key {key!r} would overwrite the {key} result in metrics.json")
        doc[key] = value
    return doc


def write_report(
    out_dir: str | Path,
    trained: Mapping[str, Any],
    zero_shot: Mapping[str, Any] | None = None,
    champion: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    scores: Mapping[str, PairScores] | None = None,
    verdict: GateVerdict | None = None,
) -> dict[str, Path]:
    """Write metrics.json, report.md and the PNGs into `out_dir` (atomically); returns {kind: path}.

    `scores` (from `evaluate_with_scores`) enables the STS-B scatter; `verdict` adds the gates section
    (and `"gates"` to metrics.json).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = comparison_rows(trained, zero_shot, champion, baseline)
    paths: dict[str, Path] = {}
    images: dict[str, str] = {}
    task = next((t for t in SCATTER_TASKS if scores and t in scores), None)
    if task is not None and scores is not None:
        label = f"{TASK_LABELS[task]}{' test' if task == 'stsb' else ''}"
        paths["scatter"] = plot_scatter(scores[task], _score(trained, task), out / f"{task}_scatter.png", label)
        images[f"{label}: predicted cosine vs gold"] = paths["scatter"].name
    paths["bars"] = plot_task_bars(rows, out / "tasks.png")
    images["Spearman per task"] = paths["bars"].name
    train_log = out / TRAIN_LOG
    records = read_train_log(train_log) if train_log.is_file() else []
    if records:
        paths["training"] = plot_training(records, out / "training.png")
        images["Training: loss and dev Spearman per step"] = paths["training"].name
    more = dict(extra or {})
    if verdict is not None:
        more.setdefault("gates", verdict.to_dict())
    paths["metrics"] = write_json_atomic(out / "metrics.json",
                                         metrics_document(trained, zero_shot, champion, baseline, more))
    md = report_markdown(trained, zero_shot, champion, baseline, verdict, images, decision=more.get("gate"))
    paths["report"] = write_text_atomic(out / "report.md", md)
    return paths
