"""No model trains on a sentence pair of a set that evaluates or selects it (issue 26)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bellm.data import Pairs, Triplets, load_triplets, read_pairs
from bellm.leakage import HeldOut, filter_pairs, filter_triplets, held_out, held_out_files, normalize
from bellm.paths import DATA_DIR
from bellm.profiles import PROFILES, build_config
from bellm.sts import task_files
from bellm.training.batches import load_train_data

NLI_TRAIN = DATA_DIR / "nli" / "train" / "triplets.csv.gz"
NLI_TRAIN_PAIRS = DATA_DIR / "nli" / "train" / "pairs.tsv.gz"
NEW_PROTOCOLS = "google-research-datasets_Textual-Entailment-New-Protocols/data"
TWITTER_TRAIN = DATA_DIR / "para" / "twitter_url" / "triplets.csv.gz"
COCO_TRAIN = DATA_DIR / "para" / "coco" / "triplets.csv.gz"


def test_held_out_files_cover_every_evaluation_and_selection_set() -> None:
    names = {p.relative_to(DATA_DIR).as_posix() for p in held_out_files()}
    for year in ("sts12", "sts13", "sts14", "sts15", "sts16"):
        assert any(n.startswith(f"sts/{year}/") for n in names), year
    assert {"sts/stsb/dev.tsv", "sts/stsb/test.tsv", "sts/sickr/dev.tsv", "sts/sickr/test.tsv",
            "nli/dev/pairs.tsv"} <= names
    assert not any(n.endswith("train.tsv") for n in names)


def test_normalize_ignores_case_punctuation_and_spacing() -> None:
    expected = "a man is playing a guitar"
    assert normalize("A man  is playing a guitar.") == normalize("a man is playing a guitar") == expected


def test_filter_pairs_drops_held_out_pairs_in_either_order() -> None:
    index = HeldOut.from_pairs([Pairs(["A cat sits."], ["A dog runs."], np.array([1.0]))])
    train = Pairs(["a dog runs", "A cat sits.", "A cat sits."], ["A CAT SITS!", "A bird sings.", "a dog runs"],
                  np.array([1.0, 2.0, 3.0]))
    kept, dropped = filter_pairs(train, index)
    assert dropped == 2 and kept.sentence2 == ["A bird sings."] and kept.scores.tolist() == [2.0]


def test_filter_triplets_drops_any_held_out_sentence() -> None:
    index = HeldOut.from_pairs([Pairs(["A cat sits."], ["A dog runs."], np.array([1.0]))])
    trips = Triplets(["x", "y", "z", "w"], ["a cat sits", "q", "r", "s"], ["n", "A dog runs.", "t", "u"])
    kept, dropped = filter_triplets(trips, index)
    assert dropped == 2 and kept.anchor == ["z", "w"]


@pytest.mark.parametrize("profile", sorted(p for p in PROFILES if p != "paper"))
def test_no_profile_trains_on_a_held_out_pair(profile: str) -> None:
    """What a profile trains on, as the training loop loads it: no held-out pair, and no held-out sentence in a
    triplet. Before the filter STS-B train brought 4,799 STS12-16 test pairs into every profile."""
    cfg = build_config(profile)
    data = load_train_data(cfg.data)
    index = held_out()
    assert data.n_pairs + data.n_triplets > 0
    for a, b in zip(data.s1, data.s2, strict=True):
        assert (normalize(a), normalize(b)) not in index.pairs
    for t in zip(data.anchor, data.positive, data.negative, strict=True):
        assert not {normalize(s) for s in t} & index.sentences


def test_staged_nli_triplets_hold_no_held_out_sentence() -> None:
    """The staged NLI file itself (not only what training keeps of it) is clean: every triplet sentence, the
    premises included, is absent from every evaluation and selection set."""
    trips = load_triplets(NLI_TRAIN)
    assert len(trips) == 17306
    index = held_out()
    for t in zip(trips.anchor, trips.positive, trips.negative, strict=True):
        assert not {normalize(s) for s in t} & index.sentences


def test_staged_nli_pairs_hold_no_held_out_or_nli_val_sentence() -> None:
    """The staged NLI scored pairs (session 10): no sentence, premises included, of an evaluation or selection set,
    none of the NLI val files (all 4,978 pairs, of which the dev file stages 1,500), no pair twice."""
    import csv
    import gzip
    import io

    pairs = read_pairs(NLI_TRAIN_PAIRS)
    assert len(pairs) == 73864 and set(pairs.scores.tolist()) == {0.0, 1.0, 2.0}
    val: set[str] = set()
    for protocol in ("base", "contrast", "edit_other", "edit_premise"):
        text = gzip.decompress((DATA_DIR / "raw" / NEW_PROTOCOLS / protocol / "val.tsv.gz").read_bytes()).decode()
        rows = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")
        val.update(normalize(row[c]) for row in rows for c in ("sentence1", "sentence2"))
    banned = held_out().sentences | val
    seen: set[tuple[str, str]] = set()
    for a, b in zip(pairs.sentence1, pairs.sentence2, strict=True):
        key = (normalize(a), normalize(b))
        assert not set(key) & banned and key not in seen, (a, b)
        seen.add(key)
    assert len(val) > 5000


def test_staged_twitter_triplets_hold_no_held_out_or_twitter_test_sentence() -> None:
    """The Twitter URL corpus triplets (session 11): no sentence of an evaluation or selection set, none of the
    corpus's own test split (MTEB's TwitterURLCorpus, read from the raw copies), no triplet twice, and every
    anchor's positive and hard negative differ."""
    import gzip

    trips = load_triplets(TWITTER_TRAIN)
    assert len(trips) == 8976
    raw = DATA_DIR / "raw" / "castorini_data" / "twitterPPDB" / "test"
    test = {normalize(line) for f in ("a.toks.gz", "b.toks.gz")
            for line in gzip.decompress((raw / f).read_bytes()).decode().split("\n") if line.strip()}
    assert len(test) > 5000
    banned = held_out().sentences | test
    seen: set[tuple[str, str, str]] = set()
    for t in zip(trips.anchor, trips.positive, trips.negative, strict=True):
        key = (normalize(t[0]), normalize(t[1]), normalize(t[2]))
        assert not set(key) & banned and key not in seen and len(set(key)) == 3, t
        seen.add(key)


def test_staged_coco_triplets_hold_no_held_out_sentence() -> None:
    """The COCO caption triplets (session 11): no sentence of an evaluation or selection set, no triplet twice, the
    positive a caption of the anchor's image, and the hard negative a caption of no image of the anchor or the
    positive (a text can caption several images; read from the raw annotations)."""
    import gzip
    import json

    trips = load_triplets(COCO_TRAIN)
    assert len(trips) == 9992
    raw = DATA_DIR / "raw" / "ruizewang_evaluate" / "annotations" / "captions_val2017.json.gz"
    image: dict[str, set[int]] = {}
    for a in json.loads(gzip.decompress(raw.read_bytes()))["annotations"]:
        image.setdefault(" ".join(a["caption"].split()), set()).add(a["image_id"])
    banned = held_out().sentences
    seen: set[tuple[str, str, str]] = set()
    for a, p, n in zip(trips.anchor, trips.positive, trips.negative, strict=True):
        key = (normalize(a), normalize(p), normalize(n))
        assert not set(key) & banned and key not in seen, (a, p, n)
        assert image[a] & image[p] and not (image[a] | image[p]) & image[n], (a, p, n)
        seen.add(key)


def test_staged_files_match_provenance() -> None:
    text = (DATA_DIR / "PROVENANCE.md").read_text()
    from bellm.io import sha256_file

    for rel in ("nli/train/triplets.csv.gz", "nli/train/pairs.tsv.gz", "nli/dev/pairs.tsv",
                "para/twitter_url/triplets.csv.gz", "para/coco/triplets.csv.gz"):
        assert sha256_file(DATA_DIR / rel) in text, rel
    assert len(read_pairs(DATA_DIR / "nli" / "dev" / "pairs.tsv")) == 1500


def test_filter_is_recorded_and_can_be_turned_off(tmp_path: Path) -> None:
    stsb = str(DATA_DIR / "sts" / "stsb" / "train.tsv")
    on = load_train_data(build_config("quick", overrides={"data.train_pairs": [stsb]}).data)
    off = load_train_data(build_config("quick", overrides={"data.train_pairs": [stsb],
                                                           "data.exclude_held_out": False}).data)
    assert on.n_pairs == 950 and off.n_pairs == 5749
    assert on.files[0]["held_out_dropped"] == 4799 and off.files[0]["held_out_dropped"] == 0


def test_the_held_out_files_are_in_the_training_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They decide which rows train: an edited evaluation file must not reuse a training filtered by the old one."""
    import bellm.leakage
    from bellm.keys import train_key

    held = tmp_path / "dev.tsv"
    monkeypatch.setattr(bellm.leakage, "held_out_files", lambda: [held])
    on, off = build_config("quick"), build_config("quick", overrides={"data.exclude_held_out": False})
    keys = []
    for second in ("b", "c"):
        held.write_text(f"score\tsentence1\tsentence2\n1\ta\t{second}\n")
        keys.append([train_key(cfg, {"train.tsv": "x"}, "base") for cfg in (on, off)])
    assert keys[0][0] != keys[1][0]  # filtering: the edit retrains
    assert keys[0][1] == keys[1][1]  # not filtering: the held-out files decide nothing


EUROPARL_DEV = task_files("europarl_dev")[0]


def test_the_unseen_domain_dev_set_shares_no_sentence_with_training_or_evaluation_data() -> None:
    """`sts/europarl/dev.tsv` (STS 2012 SMTeuroparl train) measures a domain nothing trains on: none of its
    sentences is in a training file of any profile (before filtering) or in another evaluation/selection set;
    the staging dropped the two MSRpar rows mixed into the source file (PROVENANCE.md section f)."""
    dev = read_pairs(EUROPARL_DEV)
    assert len(dev) == 732
    sents = {normalize(s) for s in [*dev.sentence1, *dev.sentence2]}
    others = held_out([f for f in held_out_files() if f.resolve() != EUROPARL_DEV.resolve()])
    assert not sents & others.sentences
    for profile in sorted(p for p in PROFILES if p != "paper"):
        cfg = build_config(profile)
        for f in cfg.data.train_pairs:
            p = read_pairs(f)
            assert not sents & {normalize(s) for s in [*p.sentence1, *p.sentence2]}, (profile, f)
        for f in cfg.data.train_triplets:
            t = load_triplets(f)
            assert not sents & {normalize(s) for s in [*t.anchor, *t.positive, *t.negative]}, (profile, f)
    from bellm.io import sha256_file

    assert sha256_file(EUROPARL_DEV) in (DATA_DIR / "PROVENANCE.md").read_text()
