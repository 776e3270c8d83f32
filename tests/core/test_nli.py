"""MNLI-style NLI files → training triplets and selection pairs (bellm.nli)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bellm.data import DataError, load_triplets
from bellm.nli import NliPair, dedupe_triplets, read_nli, scored_pairs, triplets_from_pairs


def test_triplets_pair_the_ith_entailment_with_the_ith_contradiction() -> None:
    rows = [NliPair("P one.", "e1", "entailment"), NliPair("P one.", "c1", "contradiction"),
            NliPair("p ONE", "e2", "entailment"), NliPair("P one.", "n", "neutral"),
            NliPair("P one.", "c2", "contradiction"), NliPair("P one.", "e3", "entailment"),
            NliPair("Only entailed.", "e", "entailment")]
    assert triplets_from_pairs(rows) == [("P one.", "e1", "c1"), ("P one.", "e2", "c2")]


def test_dedupe_and_scored_pairs() -> None:
    assert dedupe_triplets([("a", "b", "c"), ("A.", "b", "c!"), ("a", "c", "b")]) == [("a", "b", "c"), ("a", "c", "b")]
    rows = [NliPair("p", "h", "entailment"), NliPair("P.", "h", "entailment"), NliPair("p", "x", "contradiction"),
            NliPair("p", "y", "neutral")]
    assert scored_pairs(rows) == [(2.0, "p", "h"), (0.0, "p", "x"), (1.0, "p", "y")]


def test_read_nli_formats_and_labels(tmp_path: Path) -> None:
    tsv = tmp_path / "mnli.tsv"
    tsv.write_text("index\tsentence1\tsentence2\tgold_label\n0\tA p.\tA h.\tentailment\n1\tA p.\tB h.\t-\n"
                   "2\tA p.\tC h.\tcontradiction\n")
    assert [p.label for p in read_nli(tsv)] == ["entailment", "contradiction"]
    csv_ = tmp_path / "glue.csv"
    csv_.write_text('premise,hypothesis,label\n"A, p.",h1,0\n"A, p.",h2,2\n')
    assert read_nli(csv_) == [NliPair("A, p.", "h1", "entailment"), NliPair("A, p.", "h2", "contradiction")]


def test_read_nli_names_file_and_line_of_a_bad_label(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("premise,hypothesis,label\np,h,entailment\np,h2,maybe\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: unknown NLI label 'maybe'"):
        read_nli(f)


def test_training_reads_an_mnli_file_as_triplets(tmp_path: Path) -> None:
    f = tmp_path / "mnli.csv"
    f.write_text("premise,hypothesis,label\np,yes,entailment\np,no,contradiction\nq,maybe,neutral\n")
    t = load_triplets(f)
    assert (t.anchor, t.positive, t.negative) == (["p"], ["yes"], ["no"])
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"other\.csv:1: missing column.*sent0, sent1, hard_neg or sentence1"):
        load_triplets(other)


def test_an_nli_file_with_a_broken_header_says_why(tmp_path: Path) -> None:
    """The column probe swallowed every error of the first line: a wrong delimiter was 'not an NLI file'."""
    f = tmp_path / "semi.csv"
    f.write_text("premise;hypothesis;label\np;h;entailment\n")
    with pytest.raises(DataError, match=r"semi\.csv:1: wrong delimiter"):
        read_nli(f)
