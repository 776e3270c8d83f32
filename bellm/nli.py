"""NLI data as training triplets and selection pairs (MNLI-style files in, bellm's formats out).

AnglE/SimCSE train on NLI as triplets: a premise, a hypothesis it entails (positive) and one it contradicts
(hard negative). MNLI-style releases store one labelled (premise, hypothesis) pair per row, several rows per
premise; `triplets_from_pairs` groups them. For *selection* an NLI dev split becomes scored pairs
(entailment 2, neutral 1, contradiction 0), so the Spearman machinery of the STS sets scores it unchanged.
Pure functions over rows; the readers report bad rows with file and line (`bellm.data`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from bellm.data import DataError, Triplets, _rows, _sentence
from bellm.io import sha256_file
from bellm.leakage import normalize

LABELS = ("entailment", "neutral", "contradiction")
SCORES = {"entailment": 2.0, "neutral": 1.0, "contradiction": 0.0}
# Column names of MNLI-style releases: GLUE/MNLI .tsv and .jsonl, and the premise/hypothesis/label CSVs.
COLUMN_SETS: tuple[tuple[str, str, str], ...] = (
    ("sentence1", "sentence2", "gold_label"),
    ("premise", "hypothesis", "label"),
)
# GLUE's integer labels for MNLI/SNLI.
INT_LABELS = {"0": "entailment", "1": "neutral", "2": "contradiction"}


@dataclass(frozen=True)
class NliPair:
    premise: str
    hypothesis: str
    label: str  # one of LABELS


def _labelled_rows(path: Path) -> tuple[tuple[str, str, str], Iterator[tuple[int, dict[str, object]]]]:
    """The column set the header names, and its rows. Only a missing column moves on to the next set: any other
    error (encoding, delimiter, a malformed row) is the file's own and is raised as it is."""
    for cols in COLUMN_SETS:
        rows = _rows(path, cols)
        try:
            first = next(rows, None)
        except DataError as e:
            if e.line == 1 and e.reason.startswith("missing column"):
                continue
            raise
        return cols, chain([] if first is None else [first], rows)
    raise DataError(path, 1, f"not an NLI file: expected columns {' or '.join(map(', '.join, COLUMN_SETS))}")


def read_nli(path: str | Path) -> list[NliPair]:
    """Labelled pairs of an MNLI-style file; rows without a gold label (MNLI's '-') are skipped."""
    path = Path(path)
    (p_col, h_col, l_col), rows = _labelled_rows(path)
    out: list[NliPair] = []
    for lineno, row in rows:
        raw = str(row[l_col]).strip().lower()
        if raw in ("-", ""):
            continue
        label = INT_LABELS.get(raw, raw)
        if label not in LABELS:
            raise DataError(path, lineno, f"unknown NLI label {row[l_col]!r} (expected {', '.join(LABELS)})")
        out.append(NliPair(_sentence(path, lineno, row, p_col), _sentence(path, lineno, row, h_col), label))
    if not out:
        raise DataError(path, None, "no labelled rows")
    return out


def triplets_from_pairs(pairs: Iterable[NliPair]) -> list[tuple[str, str, str]]:
    """(premise, entailed, contradicted) per premise: its i-th entailment with its i-th contradiction, so
    a premise with two of each gives two triplets and no hypothesis is used twice. Premises are grouped by
    their normalised text (a premise copied between files is one premise); first-seen order is kept."""
    groups: dict[str, tuple[str, list[str], list[str]]] = {}
    for p in pairs:
        key = normalize(p.premise)
        premise, ent, con = groups.setdefault(key, (p.premise, [], []))
        if p.label == "entailment":
            ent.append(p.hypothesis)
        elif p.label == "contradiction":
            con.append(p.hypothesis)
    out: list[tuple[str, str, str]] = []
    for premise, ent, con in groups.values():
        out.extend((premise, e, c) for e, c in zip(_unique(ent), _unique(con), strict=False))
    return out


def _unique(texts: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in texts:
        if (k := normalize(t)) not in seen:
            seen.add(k)
            out.append(t)
    return out


def dedupe_triplets(triplets: Iterable[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """First occurrence of each normalised (anchor, positive, negative)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for t in triplets:
        k = (normalize(t[0]), normalize(t[1]), normalize(t[2]))
        if k not in seen:
            seen.add(k)
            out.append(t)
    return out


def scored_pairs(pairs: Iterable[NliPair]) -> list[tuple[float, str, str]]:
    """NLI pairs as STS-style scored pairs (entailment 2 > neutral 1 > contradiction 0), deduplicated."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in pairs:
        k = (normalize(p.premise), normalize(p.hypothesis))
        if k not in seen:
            seen.add(k)
            out.append((SCORES[p.label], p.premise, p.hypothesis))
    return out


def load_nli_triplets(path: str | Path, limit: int | None = None) -> Triplets:
    """An MNLI-style file read directly as training triplets (`data.train_triplets` accepts one)."""
    trips = triplets_from_pairs(read_nli(path))
    if not trips:
        raise DataError(path, None, "no premise has both an entailed and a contradicted hypothesis")
    trips = trips[:limit] if limit is not None else trips
    return Triplets([t[0] for t in trips], [t[1] for t in trips], [t[2] for t in trips], str(path),
                    sha256_file(Path(path)))
