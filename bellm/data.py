"""Readers for scored pairs, triplets and sentence lists, with errors that name file, line and reason.

Formats by extension (optionally `.gz`): `.tsv` (tab), `.csv` (comma, RFC-4180 quoting), `.jsonl`
(one object per line), and for sentence lists also `.txt` (one sentence per line). Tabular files need
a header row naming the columns.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bellm.errors import InputError
from bellm.io import sha256_file

PAIR_COLUMNS = ("score", "sentence1", "sentence2")
TRIPLET_COLUMNS = ("sent0", "sent1", "hard_neg")


class DataError(InputError):
    """Bad input data. `str(err)` is `path:line: reason`, ready to show a user."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


def spread_rows(total: int, n: int) -> list[int]:
    """`n` row indices evenly spaced over `total` rows (the first row always among them): a deterministic
    sample that keeps a file's order and covers all of it."""
    if n < 1:
        raise InputError(f"a sample needs at least 1 row, got {n}")
    n = min(n, total)
    return [i * total // n for i in range(n)]


@dataclass(frozen=True)
class Pairs:
    """Scored sentence pairs (STS style). `scores` keeps the file's own range."""

    sentence1: list[str]
    sentence2: list[str]
    scores: np.ndarray  # (N,) float64
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.sentence1)

    def head(self, n: int) -> Pairs:
        return Pairs(self.sentence1[:n], self.sentence2[:n], self.scores[:n], self.source, self.sha256)

    def take(self, rows: Sequence[int]) -> Pairs:
        idx = list(rows)
        return Pairs([self.sentence1[i] for i in idx], [self.sentence2[i] for i in idx], self.scores[idx],
                     self.source, self.sha256)

    def spread(self, n: int | None) -> Pairs:
        """`n` rows evenly spaced over the file (all of it when n is None or >= its length). A capped dev set
        must sample every block of its file: STS-B dev is ordered by genre, and its first 500 rows are all
        image captions."""
        return self if n is None or n >= len(self) else self.take(spread_rows(len(self), n))

    def unique_sentences(self, n: int) -> list[str]:
        """The first `n` distinct sentences, row by row (sentence1, then sentence2): a fixed sample."""
        seen: dict[str, None] = {}
        for a, b in zip(self.sentence1, self.sentence2, strict=True):
            seen.setdefault(a)
            seen.setdefault(b)
            if len(seen) >= n:
                break
        return list(seen)[:n]


@dataclass(frozen=True)
class Triplets:
    """(anchor, positive, hard negative) triplets, as in SimCSE's NLI file."""

    anchor: list[str]
    positive: list[str]
    negative: list[str]
    source: str = ""
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.anchor)

    def head(self, n: int) -> Triplets:
        return Triplets(self.anchor[:n], self.positive[:n], self.negative[:n], self.source, self.sha256)


@dataclass(frozen=True)
class Sentences:
    texts: list[str]
    source: str = ""
    sha256: str = ""
    lines: list[int] = field(default_factory=list)


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    if ext not in {".tsv", ".csv", ".jsonl", ".txt"}:
        raise DataError(path, None, f"unknown format {ext or '(no extension)'!r}; use .tsv, .csv, .jsonl or .txt")
    return ext[1:]


def _read_text(path: Path) -> str:
    """Whole file as text; invalid UTF-8 is reported with its line number."""
    if not path.exists():
        raise DataError(path, None, "file not found")
    if path.is_dir():
        raise DataError(path, None, "is a directory, expected a file")
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(path, None, f"not a valid gzip file ({e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise DataError(path, None, "empty file")
    return text


def _rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line number, row) with the required columns present; other columns are ignored."""
    fmt = _format_of(path)
    text = _read_text(path)
    if fmt == "jsonl":
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, lineno, f"invalid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(path, lineno, "expected a JSON object per line")
            missing = [c for c in columns if c not in obj]
            if missing:
                raise DataError(path, lineno, f"missing column(s) {', '.join(missing)}")
            yield lineno, obj
        return
    if fmt == "txt":
        raise DataError(path, None, ".txt holds plain sentences; pairs and triplets need .tsv, .csv or .jsonl")
    delim = "\t" if fmt == "tsv" else ","
    other = "," if delim == "\t" else "\t"
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delim,
        quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
        strict=True,
    )
    try:
        header = next(reader)
    except csv.Error as e:
        raise DataError(path, 1, f"unreadable header ({e})") from None
    header = [h.strip() for h in header]
    if len(header) == 1 and (other in header[0] or ";" in header[0]):
        found = other if other in header[0] else ";"
        raise DataError(
            path,
            1,
            f"wrong delimiter: a .{fmt} file must be {'tab' if delim == chr(9) else 'comma'}"
            f"-separated, but the header looks {found!r}-separated",
        )
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(path, 1, f"missing column(s) {', '.join(missing)} (header has: {', '.join(header)})")
    index = {c: header.index(c) for c in columns}
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataError(path, reader.line_num, f"malformed row ({e})") from None
        lineno = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if len(fields) != len(header):
            hint = " (wrong delimiter?)" if len(fields) < len(header) else " (stray delimiter inside a field?)"
            raise DataError(path, lineno, f"expected {len(header)} fields, found {len(fields)}{hint}")
        yield lineno, {c: fields[i] for c, i in index.items()}


def _sentence(path: Path, lineno: int, row: dict[str, object], col: str) -> str:
    value = row[col]
    if not isinstance(value, str):
        raise DataError(path, lineno, f"column {col!r} must be text, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise DataError(path, lineno, f"empty sentence in column {col!r}")
    return value


def _score(path: Path, lineno: int, value: object) -> float:
    if isinstance(value, bool):
        raise DataError(path, lineno, f"score must be a number, got {value!r}")
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(path, lineno, f"score is not a number: {value!r}") from None
    if not math.isfinite(score):
        raise DataError(path, lineno, f"score must be finite, got {value!r}")
    return score


def read_pairs(path: str | Path, limit: int | None = None) -> Pairs:
    """Scored pairs with columns `score, sentence1, sentence2`."""
    path = Path(path)
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    for lineno, row in _rows(path, PAIR_COLUMNS):
        scores.append(_score(path, lineno, row["score"]))
        s1.append(_sentence(path, lineno, row, "sentence1"))
        s2.append(_sentence(path, lineno, row, "sentence2"))
        if limit is not None and len(s1) >= limit:
            break
    if not s1:
        raise DataError(path, None, "no data rows (only a header?)")
    return Pairs(s1, s2, np.asarray(scores, dtype=np.float64), str(path), sha256_file(path))


def read_triplets(path: str | Path, limit: int | None = None) -> Triplets:
    """Triplets with columns `sent0, sent1, hard_neg` (anchor, positive, hard negative)."""
    path = Path(path)
    a: list[str] = []
    p: list[str] = []
    n: list[str] = []
    for lineno, row in _rows(path, TRIPLET_COLUMNS):
        a.append(_sentence(path, lineno, row, "sent0"))
        p.append(_sentence(path, lineno, row, "sent1"))
        n.append(_sentence(path, lineno, row, "hard_neg"))
        if limit is not None and len(a) >= limit:
            break
    if not a:
        raise DataError(path, None, "no data rows (only a header?)")
    return Triplets(a, p, n, str(path), sha256_file(path))


def read_sentences(path: str | Path) -> Sentences:
    """Plain sentences: `.txt` one per line, or a `sentence`/`text` column. Row i of the output is line i
    of a `.txt` (one final newline allowed), so a blank line is refused with its line number rather than
    silently shifting every row after it."""
    path = Path(path)
    fmt = _format_of(path)
    texts: list[str] = []
    lines: list[int] = []
    if fmt == "txt":
        raw_lines = _read_text(path).split("\n")
        if raw_lines and raw_lines[-1] == "":
            raw_lines.pop()  # the newline that ends the last line
        for lineno, line in enumerate(raw_lines, start=1):
            if not line.strip():
                raise DataError(path, lineno, "blank line: a .txt holds one sentence per line and row i of the "
                                "output is line i; remove the line (or use .jsonl for empty texts)")
            texts.append(line.strip())
            lines.append(lineno)
    else:
        col = _sentence_column(path, fmt)
        for lineno, row in _rows(path, (col,)):
            texts.append(_sentence(path, lineno, row, col))
            lines.append(lineno)
    if not texts:
        raise DataError(path, None, "no sentences")
    return Sentences(texts, str(path), sha256_file(path), lines)


def _sentence_column(path: Path, fmt: str) -> str:
    text = _read_text(path)
    if fmt == "jsonl":
        first = next(line for line in text.split("\n") if line.strip())
        try:
            keys = json.loads(first).keys()
        except (json.JSONDecodeError, AttributeError):
            raise DataError(path, 1, "invalid JSON object") from None
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",",
                            quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
        try:
            keys = [k.strip() for k in next(reader)]
        except (csv.Error, StopIteration) as e:
            raise DataError(path, 1, f"unreadable header ({e})") from None
    for col in ("sentence", "text", "sentence1"):
        if col in keys:
            return col
    raise DataError(path, 1, "missing column: need one of 'sentence', 'text' or 'sentence1'")


def rows_sha256(*columns: Sequence[object]) -> str:
    """Content hash of loaded rows (hub data has no local file to hash): the data, not its name, keys caches."""
    h = hashlib.sha256()
    for col in columns:
        for value in col:
            h.update(json.dumps(value, ensure_ascii=False).encode("utf-8"))
            h.update(b"\x1e")
        h.update(b"\x1d")
    return h.hexdigest()


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf:<id>[@<revision>][:<split>]` → (id, revision or None, split)."""
    body = spec[len("hf:") :]
    ds_id, _, split = body.partition(":")
    ds_id, _, revision = ds_id.partition("@")
    if not ds_id:
        raise DataError(spec, None, "expected hf:<dataset id>[@<revision>][:<split>]")
    return ds_id, revision or None, split or "train"


def _hf_dataset(dataset_id: str, split: str, revision: str | None):  # noqa: ANN202 - datasets.Dataset
    try:
        import datasets  # noqa: PLC0415 - optional, lazy
    except ImportError as e:
        raise RuntimeError("reading a hub dataset needs `pip install datasets`") from e
    return datasets.load_dataset(dataset_id, split=split, revision=revision)


def load_hf_pairs(
    dataset_id: str, split: str = "train", columns: Sequence[str] = PAIR_COLUMNS, revision: str | None = None
) -> Pairs:
    """Scored pairs from a Hugging Face `datasets` id. Only used when a user asks for one (needs the hub).
    `sha256` is the hash of the rows read, so a changed hub dataset changes every cache key downstream."""
    ds = _hf_dataset(dataset_id, split, revision)
    sc, c1, c2 = columns
    scores = np.asarray([float(x) for x in ds[sc]], dtype=np.float64)
    s1, s2 = list(ds[c1]), list(ds[c2])
    rev = f"@{revision}" if revision else ""
    return Pairs(s1, s2, scores, f"hf:{dataset_id}{rev}:{split}", rows_sha256(s1, s2, scores.tolist()))


# Column names used by common triplet datasets on the hub (SimCSE NLI, AnglE, sentence-transformers).
HF_TRIPLET_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("sent0", "sent1", "hard_neg"),
    ("anchor", "positive", "negative"),
    ("text", "positive", "negative"),
    ("query", "positive", "negative"),
)


def load_hf_triplets(
    dataset_id: str, split: str = "train", columns: Sequence[str] | None = None, revision: str | None = None
) -> Triplets:
    ds = _hf_dataset(dataset_id, split, revision)
    if columns is None:
        names = set(ds.column_names)
        columns = next((c for c in HF_TRIPLET_COLUMNS if set(c) <= names), None)
        if columns is None:
            raise DataError(f"hf:{dataset_id}", None, f"no triplet columns among {sorted(names)}; expected one of "
                            f"{[', '.join(c) for c in HF_TRIPLET_COLUMNS]}")
    a, p, n = columns
    anchor, pos, neg = list(ds[a]), list(ds[p]), list(ds[n])
    rev = f"@{revision}" if revision else ""
    return Triplets(anchor, pos, neg, f"hf:{dataset_id}{rev}:{split}", rows_sha256(anchor, pos, neg))


def load_pairs(spec: str | Path, limit: int | None = None) -> Pairs:
    """A local file, or `hf:<dataset id>[@revision][:split]` when the user explicitly asks for the hub."""
    s = str(spec)
    if s.startswith("hf:"):
        ds_id, revision, split = parse_hf_spec(s)
        pairs = load_hf_pairs(ds_id, split, revision=revision)
        return pairs.head(limit) if limit else pairs
    return read_pairs(s, limit)


def load_triplets(spec: str | Path, limit: int | None = None) -> Triplets:
    s = str(spec)
    if s.startswith("hf:"):
        ds_id, revision, split = parse_hf_spec(s)
        trip = load_hf_triplets(ds_id, split, revision=revision)
        return trip.head(limit) if limit else trip
    try:
        return read_triplets(s, limit)
    except DataError as e:
        if e.line != 1 or not e.reason.startswith("missing column"):
            raise
        from bellm.nli import COLUMN_SETS, load_nli_triplets

        try:  # an MNLI-style file (premise, hypothesis, label rows): grouped into triplets
            return load_nli_triplets(s, limit)
        except DataError as nli_error:
            if nli_error.line != 1:
                raise
            expected = " or ".join(", ".join(c) for c in ((*TRIPLET_COLUMNS,), *COLUMN_SETS))
            raise DataError(s, 1, f"{e.reason}; a triplet file needs columns {expected}") from None
