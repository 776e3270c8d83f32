"""STS tasks and metrics: canonical task sizes, SentEval "all" vs "wmean", hand-computed correlations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bellm.data import Pairs
from bellm.paths import STS_DIR
from bellm.sts import (
    FULL_TASKS,
    YEAR_SUBSETS,
    Task,
    average,
    cosine_rows,
    load_suite,
    load_task,
    pearson,
    score_task,
    spearman,
)

CANONICAL = {"sts12": 3108, "sts13": 1500, "sts14": 3750, "sts15": 3000, "sts16": 1186, "stsb": 1379, "sickr": 4927}


def _pairs(scores: list[float], tag: str = "") -> Pairs:
    n = len(scores)
    return Pairs([f"{tag}a{i}" for i in range(n)], [f"{tag}b{i}" for i in range(n)], np.asarray(scores, float))


def test_full_suite_has_the_seven_tasks_with_canonical_sizes() -> None:
    tasks = load_suite("full")
    assert tuple(t.name for t in tasks) == FULL_TASKS
    assert {t.name: t.n for t in tasks} == CANONICAL


@pytest.mark.parametrize("year", sorted(YEAR_SUBSETS))
def test_year_tasks_use_every_subset_file(year: str) -> None:
    on_disk = {p.stem for p in (STS_DIR / year).glob("*.tsv")}
    assert set(YEAR_SUBSETS[year]) == on_disk
    task = load_task(year)
    assert [name for name, _ in task.subsets] == list(YEAR_SUBSETS[year])
    assert len(task.files) == len(on_disk) and all(len(sha) == 64 for sha in task.files.values())


def test_gate_suite_is_stsb_dev() -> None:
    (task,) = load_suite("gate")
    assert task.name == "stsb_dev" and task.n == 1500
    assert next(iter(task.files)).endswith("stsb/dev.tsv")


def test_max_pairs_samples_every_subset_and_genre_block() -> None:
    """A capped task covers the whole task: STS-B dev's first 500 rows are all captions (a selection set of
    them reads one genre), evenly spaced rows reach its news and forum blocks too."""
    task = load_task("sts12", max_pairs=800)
    assert task.n == 800
    assert [name for name, _ in task.subsets] == list(YEAR_SUBSETS["sts12"])
    full = load_task("stsb_dev")
    capped = load_task("stsb_dev", max_pairs=500)
    (_, rows), (_, full_rows) = capped.subsets[0], full.subsets[0]
    assert capped.n == 500 and rows.sentence1[0] == full_rows.sentence1[0]
    assert rows.sentence1[-1] in full_rows.sentence1[1200:]  # the last sampled row is from the file's end
    assert set(rows.sentence1) <= set(full_rows.sentence1)
    assert load_task("stsb", max_pairs=5).n == 5
    with pytest.raises(ValueError, match="max_pairs"):
        load_task("stsb", max_pairs=0)


def test_user_files_are_tasks_keyed_by_stem(tmp_path: Path) -> None:
    f = tmp_path / "my_pairs.tsv"
    f.write_text("score\tsentence1\tsentence2\n1\ta\tb\n2\tc\td\n")
    tasks = load_suite([str(f), "stsb"])
    assert [t.name for t in tasks] == ["my_pairs", "stsb"]
    assert tasks[0].n == 2
    with pytest.raises(ValueError, match="duplicate task key"):
        load_suite([str(f), str(f)])


def test_unknown_file_is_reported() -> None:
    with pytest.raises(ValueError, match="nope.tsv"):
        load_suite("nope.tsv")


def test_spearman_and_pearson_match_hand_computed_values() -> None:
    # ranks differ by one swap: rho = 1 - 6*2/(4*15) = 0.8
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(80.0)
    # ties use average ranks (scipy): gold ranks [1.5, 1.5, 3], pred ranks [1, 2, 3] -> r = 0.8660...
    assert spearman(np.array([0.1, 0.2, 0.3]), np.array([1.0, 1.0, 2.0])) == pytest.approx(86.6025, abs=1e-3)
    # pearson: cov 4.5 / sqrt(2 * 10.1667)
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6.5])) == pytest.approx(99.7949, abs=1e-3)
    assert spearman(np.array([3.0, 2, 1]), np.array([1.0, 2, 3])) == pytest.approx(-100.0)


def test_undefined_correlations_are_none_not_nan() -> None:
    assert spearman(np.ones(5), np.arange(5.0)) is None  # collapsed model: all cosines equal
    assert pearson(np.arange(5.0), np.ones(5)) is None
    assert spearman(np.array([0.5]), np.array([1.0])) is None
    assert spearman(np.array([np.nan, 1.0, 2.0]), np.arange(3.0)) is None
    assert average([80.0, None]) is None
    assert average([80.0, 70.0]) == 75.0


def test_all_setting_differs_from_wmean() -> None:
    # Each subset is perfectly ranked on its own, but subset B's cosines sit below subset A's while its
    # gold scores are higher: concatenating ("all") must hurt, the weighted mean of subsets must not.
    task = Task("toy", (("A", _pairs([0, 1, 2, 3], "A")), ("B", _pairs([2, 3, 4, 5], "B"))))
    cos = np.array([0.5, 0.6, 0.7, 0.8, 0.1, 0.2, 0.3, 0.4])
    block = score_task(task, cos)
    assert block["n"] == 8
    assert block["subsets"]["A"]["spearman"] == pytest.approx(100.0)
    assert block["subsets"]["B"]["n"] == 4
    assert block["wmean"]["spearman"] == pytest.approx(100.0)
    assert block["spearman"] == pytest.approx(spearman(cos, task.gold))
    assert block["spearman"] < 60


def test_wmean_weights_by_pair_count() -> None:
    task = Task("toy", (("A", _pairs([0, 1, 2, 3], "A")), ("B", _pairs([0, 1], "B"))))
    cos = np.array([0.1, 0.2, 0.4, 0.3, 0.9, 0.8])  # A: rho 80, B: rho -100
    block = score_task(task, cos)
    assert block["wmean"]["spearman"] == pytest.approx((80 * 4 - 100 * 2) / 6)


def test_single_file_task_has_no_subsets_and_checks_length() -> None:
    task = Task("one", (("test", _pairs([0, 1, 2])),))
    assert score_task(task, np.array([0.1, 0.2, 0.3]))["subsets"] == {}
    with pytest.raises(ValueError, match="2 predictions for 3 pairs"):
        score_task(task, np.array([0.1, 0.2]))


def test_cosine_rows() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0], [-3.0, -4.0]])
    np.testing.assert_allclose(cosine_rows(a, b), [0.0, 1.0, 0.0, -1.0])
    with pytest.raises(ValueError, match="same shape"):
        cosine_rows(a, b[:2])


@pytest.mark.parametrize("key", ["nli_dev", "europarl_dev"])
def test_every_task_key_loads_alone_and_lists_its_files(key: str) -> None:
    """`--suite nli_dev` was read as a file path (`unknown format '(no extension)'`) and a manifest listed the
    path `nli_dev`: only STS12-16 and the STS-B/SICK-R splits were recognised as task keys outside a suite."""
    from bellm.sts import load_suite, suite_files, task_files

    assert suite_files([key]) == {key: task_files(key)}
    assert all(f.is_file() for f in task_files(key))
    (task,) = load_suite([key], max_pairs=20)
    assert task.name == key and task.n == 20
