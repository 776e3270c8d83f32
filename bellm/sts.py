"""STS tasks, suites and metrics (pure: files in, numbers out; no model here).

Tasks follow SentEval so numbers compare with the literature:
- `sts12`..`sts16`: every sub-dataset file of a year, concatenated, one Spearman (SentEval's "all"
  setting, the one SimCSE/BeLLM report). Per-subset numbers and "wmean" (subset Spearmans weighted by
  pair count) are kept beside it, because the two settings differ by points and papers mix them.
- `stsb`: STS-B test; `sickr`: SICK-R test (reported, never deciding: `bellm.splits`).
- `stsb_dev`: STS-B dev; `sickr_dev`: SICK-R trial (its dev split); `nli_dev`: NLI dev pairs. The `dev` suite
  (the three) is what the flow's gates, the champion's regression check and the export's variant gate read
  (`eval.gate_suite`).
- `europarl_dev`: STS 2012's SMTeuroparl *train* split, a domain no training file holds: the dev-side proxy for
  unseen-domain quality (sweeps report it; STS12-16 is the test-side one).
Scores are cosine similarity vs gold; metrics are Spearman and Pearson x100 (scipy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bellm.data import Pairs, read_pairs, spread_rows
from bellm.errors import InputError
from bellm.paths import STS_DIR

# Sub-dataset order as in SentEval (the order does not change the "all" Spearman; `max_pairs` samples across it).
YEAR_SUBSETS: dict[str, tuple[str, ...]] = {
    "sts12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "sts13": ("FNWN", "headlines", "OnWN"),
    "sts14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "sts15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "sts16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
SPLIT_TASKS: dict[str, tuple[str, str]] = {
    "stsb": ("stsb", "test"),
    "sickr": ("sickr", "test"),
    "stsb_dev": ("stsb", "dev"),
    "sickr_dev": ("sickr", "dev"),
    "europarl_dev": ("europarl", "dev"),
}
# Selection sets kept outside data/sts/ (paths relative to the data directory): the NLI dev pairs (entailment 2,
# neutral 1, contradiction 0; Wikipedia premises), a selection signal outside the STS domains.
DATA_TASKS: dict[str, str] = {"nli_dev": "nli/dev/pairs.tsv"}
FULL_TASKS: tuple[str, ...] = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
# STS12-16: domains the recipe never trains on (training data is filtered against them, bellm.leakage: STS-B
# train holds 4,799 of their pairs), the in-project proxy for unseen-domain quality, reported beside the
# in-domain STS-B / SICK-R numbers (`unseen_avg`).
UNSEEN_TASKS: tuple[str, ...] = ("sts12", "sts13", "sts14", "sts15", "sts16")
SUITES: dict[str, tuple[str, ...]] = {
    "gate": ("stsb_dev",), "dev": ("stsb_dev", "sickr_dev", "nli_dev"), "full": FULL_TASKS,
}
TASK_LABELS: dict[str, str] = {
    "sts12": "STS12", "sts13": "STS13", "sts14": "STS14", "sts15": "STS15", "sts16": "STS16",
    "stsb": "STS-B", "sickr": "SICK-R", "stsb_dev": "STS-B dev", "sickr_dev": "SICK-R dev", "nli_dev": "NLI dev",
    "europarl_dev": "Europarl dev",
}
# Every built-in task key, as `--suite` accepts it alone (the held-out index reads all their files).
TASK_KEYS: tuple[str, ...] = (*YEAR_SUBSETS, *SPLIT_TASKS, *DATA_TASKS)


@dataclass(frozen=True)
class Task:
    """One evaluation task: named sub-datasets whose pairs are concatenated for the task's score."""

    name: str
    subsets: tuple[tuple[str, Pairs], ...]

    @property
    def n(self) -> int:
        return sum(len(p) for _, p in self.subsets)

    def sentence_pairs(self) -> tuple[list[str], list[str]]:
        s1 = [s for _, p in self.subsets for s in p.sentence1]
        s2 = [s for _, p in self.subsets for s in p.sentence2]
        return s1, s2

    @property
    def gold(self) -> np.ndarray:
        return np.concatenate([p.scores for _, p in self.subsets]).astype(np.float64)

    @property
    def files(self) -> dict[str, str]:
        """{file path: sha256} of the files this task read (for metrics.json provenance)."""
        return {p.source: p.sha256 for _, p in self.subsets}


def _sample(subsets: list[tuple[str, Pairs]], max_pairs: int | None) -> tuple[tuple[str, Pairs], ...]:
    """`max_pairs` pairs evenly spaced over the concatenation (`bellm.data.spread_rows`), so a capped task still
    covers every sub-dataset and genre block; subsets left empty are dropped."""
    if max_pairs is None:
        return tuple(subsets)
    if max_pairs < 1:
        raise InputError(f"max_pairs must be >= 1, got {max_pairs}")
    rows = spread_rows(sum(len(p) for _, p in subsets), max_pairs)
    out: list[tuple[str, Pairs]] = []
    start = 0
    for name, pairs in subsets:
        mine = [r - start for r in rows if start <= r < start + len(pairs)]
        if mine:
            out.append((name, pairs.take(mine)))
        start += len(pairs)
    return tuple(out)


def is_builtin_task(key: str) -> bool:
    """A task key of this module (`sts12`, `stsb_dev`, `nli_dev`, ...), as opposed to a suite or a file path."""
    return key in TASK_KEYS


def task_files(name: str, sts_dir: Path = STS_DIR) -> list[Path]:
    """The files a built-in task reads (without reading them)."""
    if name in YEAR_SUBSETS:
        return [sts_dir / name / f"{s}.tsv" for s in YEAR_SUBSETS[name]]
    if name in SPLIT_TASKS:
        folder, split = SPLIT_TASKS[name]
        return [sts_dir / folder / f"{split}.tsv"]
    if name in DATA_TASKS:
        return [sts_dir.parent / DATA_TASKS[name]]
    raise InputError(f"unknown STS task {name!r}; built-in tasks are {', '.join(TASK_KEYS)}")


def suite_files(suite: str | Path | Sequence[str | Path], sts_dir: Path = STS_DIR) -> dict[str, list[Path]]:
    """{task key: files it reads} of a suite, without reading anything (to check what a suite would decide on)."""
    items = [suite] if isinstance(suite, str | Path) else list(suite)
    out: dict[str, list[Path]] = {}
    for item in items:
        key = str(item)
        if key in SUITES:
            out.update({t: task_files(t, sts_dir) for t in SUITES[key]})
        elif is_builtin_task(key):
            out[key] = task_files(key, sts_dir)
        else:
            path = Path(key)
            out[path.name.split(".")[0] or path.name] = [path]
    return out


def load_task(name: str, max_pairs: int | None = None, sts_dir: Path = STS_DIR) -> Task:
    """A built-in task by key (`sts12`..`sts16`, `stsb`, `sickr`, `stsb_dev`, `sickr_dev`, `nli_dev`,
    `europarl_dev`)."""
    files = task_files(name, sts_dir)
    names = list(YEAR_SUBSETS[name]) if name in YEAR_SUBSETS else [SPLIT_TASKS.get(name, (name, name))[1]]
    subsets = [(n, read_pairs(f)) for n, f in zip(names, files, strict=True)]
    return Task(name, _sample(subsets, max_pairs))


def load_file_task(path: str | Path, max_pairs: int | None = None) -> Task:
    """A user's scored-pair file (`score, sentence1, sentence2`) as a task keyed by the file stem."""
    path = Path(path)
    stem = path.name.split(".")[0] or path.name
    return Task(stem, _sample([(stem, read_pairs(path))], max_pairs))


def suite_name(suite: str | Sequence[str | Path]) -> str:
    """How a suite is recorded in results: its name, or the files joined by '+'."""
    if isinstance(suite, str | Path):
        return str(suite)
    return "+".join(str(s) for s in suite)


def load_suite(
    suite: str | Path | Sequence[str | Path], max_pairs: int | None = None, sts_dir: Path = STS_DIR
) -> list[Task]:
    """Tasks of a suite: `gate` (STS-B dev), `dev` (STS-B dev + SICK-R trial + NLI dev), `full` (the 7 tasks), a
    task key, or scored-pair files."""
    items = [suite] if isinstance(suite, str | Path) else list(suite)
    if not items:
        raise InputError("empty suite: give 'gate', 'dev', 'full', task keys or scored-pair files")
    tasks: list[Task] = []
    for item in items:
        key = str(item)
        if key in SUITES:
            tasks.extend(load_task(t, max_pairs, sts_dir) for t in SUITES[key])
        elif is_builtin_task(key):
            tasks.append(load_task(key, max_pairs, sts_dir))
        else:
            tasks.append(load_file_task(key, max_pairs))
    names = [t.name for t in tasks]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"suite has duplicate task key(s) {', '.join(dupes)} (file stems must be unique)")
    return tasks


def unseen_average(tasks: dict[str, dict]) -> float | None:
    """Mean Spearman of STS12-16 (the unseen-domain proxy); None unless all five were scored."""
    if not all(t in tasks for t in UNSEEN_TASKS):
        return None
    return average([tasks[t].get("spearman") for t in UNSEEN_TASKS])


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity in float64; a zero vector gives 0, not NaN."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"cosine_rows needs two (N, d) arrays of the same shape, got {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    dots = np.einsum("ij,ij->i", a, b)
    return np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)


def _corr(kind: str, pred: np.ndarray, gold: np.ndarray) -> float | None:
    """Correlation x100, or None when undefined (fewer than 2 pairs, or a constant side)."""
    from scipy import stats

    pred = np.asarray(pred, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if pred.shape != gold.shape:
        raise ValueError(f"predictions {pred.shape} and gold {gold.shape} differ in shape")
    if len(pred) < 2 or np.ptp(pred) == 0 or np.ptp(gold) == 0 or not np.isfinite(pred).all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = stats.spearmanr(pred, gold)[0] if kind == "spearman" else stats.pearsonr(pred, gold)[0]
    return None if not math.isfinite(value) else float(value) * 100.0


def spearman(pred: np.ndarray, gold: np.ndarray) -> float | None:
    return _corr("spearman", pred, gold)


def pearson(pred: np.ndarray, gold: np.ndarray) -> float | None:
    return _corr("pearson", pred, gold)


def _weighted_mean(values: Sequence[tuple[float | None, int]]) -> float | None:
    if not values or any(v is None for v, _ in values):
        return None
    total = sum(n for _, n in values)
    return sum(v * n for v, n in values) / total  # type: ignore[operator]


def score_task(task: Task, cosines: np.ndarray) -> dict:
    """The result block of one task from its per-pair cosines (in task pair order)."""
    gold = task.gold
    if len(cosines) != len(gold):
        raise ValueError(f"task {task.name}: {len(cosines)} predictions for {len(gold)} pairs")
    subsets: dict[str, dict] = {}
    start = 0
    for name, pairs in task.subsets:
        sl = slice(start, start + len(pairs))
        subsets[name] = {
            "spearman": spearman(cosines[sl], gold[sl]),
            "pearson": pearson(cosines[sl], gold[sl]),
            "n": len(pairs),
        }
        start += len(pairs)
    block = {"spearman": spearman(cosines, gold), "pearson": pearson(cosines, gold), "n": len(gold), "subsets": {}}
    if len(subsets) > 1:
        block["subsets"] = subsets
        block["wmean"] = {
            "spearman": _weighted_mean([(s["spearman"], s["n"]) for s in subsets.values()]),
            "pearson": _weighted_mean([(s["pearson"], s["n"]) for s in subsets.values()]),
        }
    return block


def average(values: Sequence[float | None]) -> float | None:
    """Plain mean of task Spearmans (the "avg" column of the papers); None if any task is undefined."""
    if not values or any(v is None for v in values):
        return None
    return float(sum(values) / len(values))  # type: ignore[arg-type]
