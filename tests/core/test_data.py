"""Data loaders: real files load with canonical counts; bad input names file, line and reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bellm.data import DataError, Pairs, read_pairs, read_sentences, read_triplets
from bellm.paths import NLI_DIR, STS_DIR


@pytest.mark.parametrize(
    "rel,count",
    [("stsb/train.tsv", 5749), ("stsb/dev.tsv", 1500), ("stsb/test.tsv", 1379), ("sickr/test.tsv", 4927)],
)
def test_repo_sts_files_have_canonical_counts(rel: str, count: int) -> None:
    pairs = read_pairs(STS_DIR / rel)
    assert len(pairs) == count
    assert pairs.scores.min() >= 0 and pairs.scores.max() <= 5
    assert len(pairs.sha256) == 64


def test_sts12_to_16_counts() -> None:
    expected = {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 3000, "sts16": 1186}
    for year, n in expected.items():
        assert sum(len(read_pairs(p)) for p in (STS_DIR / year).glob("*.tsv")) == n, year


def test_triplets_gz_csv() -> None:
    t = read_triplets(NLI_DIR / "fallback_snli_devtest" / "snli_dev_triplets.csv.gz")
    assert len(t) == 2954
    assert t.anchor[0] and t.positive[0] and t.negative[0]


def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    p = tmp / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _err(call, *args) -> DataError:
    with pytest.raises(DataError) as ei:
        call(*args)
    return ei.value


def test_formats_tsv_csv_jsonl(tmp_path: Path) -> None:
    tsv = _write(tmp_path, "a.tsv", "score\tsentence1\tsentence2\n1.5\tA cat.\tA dog.\n")
    csv_ = _write(tmp_path, "a.csv", 'sentence1,sentence2,score\n"A, cat.",A dog.,2\n')
    jl = _write(tmp_path, "a.jsonl", '{"score": 3, "sentence1": "x", "sentence2": "y"}\n\n')
    assert read_pairs(tsv).scores.tolist() == [1.5]
    assert read_pairs(csv_).sentence1 == ["A, cat."]
    assert read_pairs(jl).sentence2 == ["y"]
    gz = tmp_path / "b.tsv.gz"
    gz.write_bytes(gzip.compress(tsv.read_bytes()))
    assert len(read_pairs(gz)) == 1


def test_missing_column(tmp_path: Path) -> None:
    e = _err(read_pairs, _write(tmp_path, "a.tsv", "score\tsentence1\n1\tx\n"))
    assert e.line == 1 and "missing column" in e.reason and "sentence2" in e.reason
    assert str(e).startswith(str(tmp_path / "a.tsv") + ":1:")


def test_non_numeric_and_nan_score(tmp_path: Path) -> None:
    e = _err(read_pairs, _write(tmp_path, "a.tsv", "score\tsentence1\tsentence2\n1\tx\ty\nhigh\tx\ty\n"))
    assert e.line == 3 and "not a number" in e.reason
    e = _err(read_pairs, _write(tmp_path, "b.tsv", "score\tsentence1\tsentence2\nnan\tx\ty\n"))
    assert e.line == 2 and "finite" in e.reason
    e = _err(read_pairs, _write(tmp_path, "c.jsonl", '{"score": null, "sentence1": "x", "sentence2": "y"}\n'))
    assert e.line == 1 and "not a number" in e.reason


def test_empty_sentence(tmp_path: Path) -> None:
    e = _err(read_pairs, _write(tmp_path, "a.tsv", "score\tsentence1\tsentence2\n1\tx\ty\n2\t  \ty\n"))
    assert e.line == 3 and "empty sentence" in e.reason and "sentence1" in e.reason


def test_wrong_delimiter(tmp_path: Path) -> None:
    e = _err(read_pairs, _write(tmp_path, "a.tsv", "score,sentence1,sentence2\n1,x,y\n"))
    assert e.line == 1 and "wrong delimiter" in e.reason
    e = _err(read_pairs, _write(tmp_path, "b.tsv", "score\tsentence1\tsentence2\n1,x,y\n"))
    assert e.line == 2 and "expected 3 fields" in e.reason


def test_invalid_utf8_names_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "a.tsv", b"score\tsentence1\tsentence2\n1\tok\tok\n2\tbad \xff byte\tok\n")
    e = _err(read_pairs, p)
    assert e.line == 3 and "invalid UTF-8" in e.reason


def test_empty_and_header_only(tmp_path: Path) -> None:
    assert "empty file" in _err(read_pairs, _write(tmp_path, "a.tsv", "")).reason
    assert "no data rows" in _err(read_pairs, _write(tmp_path, "b.tsv", "score\tsentence1\tsentence2\n")).reason


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    assert "not found" in _err(read_pairs, tmp_path / "nope.tsv").reason
    assert "unknown format" in _err(read_pairs, _write(tmp_path, "a.xlsx", "x")).reason


def test_triplet_errors(tmp_path: Path) -> None:
    e = _err(read_triplets, _write(tmp_path, "t.csv", "sent0,sent1\na,b\n"))
    assert "hard_neg" in e.reason
    e = _err(read_triplets, _write(tmp_path, "u.csv", "sent0,sent1,hard_neg\na,b,c\na,,c\n"))
    assert e.line == 3 and "sent1" in e.reason


def test_sentences(tmp_path: Path) -> None:
    s = read_sentences(_write(tmp_path, "s.txt", "one\n two \n"))
    assert s.texts == ["one", "two"] and s.lines == [1, 2]
    s = read_sentences(_write(tmp_path, "s.tsv", "id\ttext\n1\thello\n"))
    assert s.texts == ["hello"]
    assert "missing column" in _err(read_sentences, _write(tmp_path, "t.tsv", "id\tfoo\n1\tx\n")).reason


def test_blank_line_in_txt_is_refused_with_its_line_number(tmp_path: Path) -> None:
    """Row i of `bellm encode`'s output must be line i of the .txt: a blank line used to shift every row."""
    err = _err(read_sentences, _write(tmp_path, "s.txt", "one\n\ntwo\n"))
    assert err.line == 2 and "blank line" in err.reason
    err = _err(read_sentences, _write(tmp_path, "w.txt", "one\n   \r\ntwo"))
    assert err.line == 2
    assert read_sentences(_write(tmp_path, "crlf.txt", "one\r\ntwo\r\n")).texts == ["one", "two"]


def test_csv_with_quoted_header(tmp_path: Path) -> None:
    s = read_sentences(_write(tmp_path, "q.csv", '"id","text"\n1,"hello, world"\n2,bye\n'))
    assert s.texts == ["hello, world", "bye"] and s.lines == [2, 3]


class _Rows(dict):
    """What `datasets.load_dataset` returns, as far as bellm reads it (the hub is unreachable here)."""

    @property
    def column_names(self) -> list[str]:
        return list(self)


def test_hub_data_is_hashed_by_content(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hf:` data used to hash to "": every cache keyed on it ignored the data. Now the rows are hashed and a
    revision can be pinned (`hf:<id>@<rev>[:split]`)."""
    import bellm.data as data

    calls = []
    table = {"score": [1.0, 2.0], "sentence1": ["a b", "e f"], "sentence2": ["c d", "g h"]}

    def fake(ds_id: str, split: str, revision: str | None) -> _Rows:
        calls.append((ds_id, split, revision))
        return _Rows(table)

    monkeypatch.setattr(data, "_hf_dataset", fake)
    assert data.parse_hf_spec("hf:org/name@abc123:validation") == ("org/name", "abc123", "validation")
    first = data.load_pairs("hf:org/name@abc123:validation")
    assert calls[-1] == ("org/name", "validation", "abc123") and len(first.sha256) == 64
    table["score"] = [1.0, 3.0]
    assert data.load_pairs("hf:org/name").sha256 != first.sha256
    assert calls[-1] == ("org/name", "train", None)
    table.clear()
    table.update(anchor=["x"], positive=["y"], negative=["z"])
    assert len(data.load_triplets("hf:org/trip").sha256) == 64


def test_spread_samples_evenly_and_keeps_order() -> None:
    from bellm.data import spread_rows

    assert spread_rows(10, 5) == [0, 2, 4, 6, 8]
    assert spread_rows(3, 5) == [0, 1, 2]
    p = Pairs([f"a{i}" for i in range(10)], [f"b{i}" for i in range(10)], np.arange(10.0))
    s = p.spread(4)
    assert s.sentence1 == ["a0", "a2", "a5", "a7"] and list(s.scores) == [0.0, 2.0, 5.0, 7.0]
    assert p.spread(None) is p and p.spread(20) is p
    with pytest.raises(ValueError, match="at least 1"):
        p.spread(0)

