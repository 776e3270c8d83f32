"""What a model must never train on: the sentences of the sets that evaluate or select it.

STS-B was compiled from the SemEval STS 2012-2016 test sets, so 4,799 of its 5,749 *train* pairs are also
STS12-16 test pairs (and a few are STS-B dev/test or SICK-R pairs); SICK train shares 142 pairs with SICK
dev/test and STS12 MSRvid. Training on them makes STS12-16 an in-domain number instead of the unseen-domain
proxy it is meant to be. Training data is therefore filtered against every held-out file at load time:

- a scored pair is dropped when the same two sentences (either order) form a held-out pair;
- a triplet is dropped when any of its sentences is a held-out sentence (NLI premises are image captions,
  news and forum text: the very sources STS was drawn from).

Sentences are compared after `normalize` (case-folded, punctuation and spacing ignored), so a re-tokenised
or re-cased copy counts as the same sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bellm.data import Pairs, Triplets, read_pairs

_NON_WORD = re.compile(r"\W+")

def normalize(text: str) -> str:
    """The comparison form of a sentence: case-folded words joined by single spaces."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def held_out_files() -> list[Path]:
    """Every file that evaluates (reports) or selects (gates, sweeps, promotion) a model: the files of every
    built-in task of `bellm.sts` (STS12-16, STS-B dev/test, SICK-R dev/test, NLI dev) that are present."""
    from bellm.sts import TASK_KEYS, task_files

    return sorted({f for t in TASK_KEYS for f in task_files(t) if f.is_file()})


@dataclass(frozen=True)
class HeldOut:
    """Normalised held-out pairs (both orders) and sentences."""

    pairs: frozenset[tuple[str, str]]
    sentences: frozenset[str]

    @staticmethod
    def from_pairs(pairs: Iterable[Pairs]) -> HeldOut:
        ps: set[tuple[str, str]] = set()
        ss: set[str] = set()
        for p in pairs:
            for a, b in zip(p.sentence1, p.sentence2, strict=True):
                na, nb = normalize(a), normalize(b)
                ps.update(((na, nb), (nb, na)))
                ss.update((na, nb))
        return HeldOut(frozenset(ps), frozenset(ss))


@lru_cache(maxsize=4)
def _held_out(files: tuple[str, ...]) -> HeldOut:
    return HeldOut.from_pairs(read_pairs(f) for f in files)


def held_out(files: Sequence[str | Path] | None = None) -> HeldOut:
    """The held-out index of `files` (default: every held-out file of the data directory)."""
    chosen = held_out_files() if files is None else [Path(f) for f in files]
    return _held_out(tuple(str(f) for f in chosen))


def filter_pairs(pairs: Pairs, index: HeldOut) -> tuple[Pairs, int]:
    """`pairs` without the held-out ones, and how many were dropped."""
    keep = [i for i, (a, b) in enumerate(zip(pairs.sentence1, pairs.sentence2, strict=True))
            if (normalize(a), normalize(b)) not in index.pairs]
    dropped = len(pairs) - len(keep)
    if not dropped:
        return pairs, 0
    return Pairs([pairs.sentence1[i] for i in keep], [pairs.sentence2[i] for i in keep], pairs.scores[keep],
                 pairs.source, pairs.sha256), dropped


def filter_triplets(trips: Triplets, index: HeldOut) -> tuple[Triplets, int]:
    """`trips` without those holding a held-out sentence, and how many were dropped."""
    s = index.sentences
    keep = [i for i, (a, p, n) in enumerate(zip(trips.anchor, trips.positive, trips.negative, strict=True))
            if normalize(a) not in s and normalize(p) not in s and normalize(n) not in s]
    dropped = len(trips) - len(keep)
    if not dropped:
        return trips, 0
    return Triplets([trips.anchor[i] for i in keep], [trips.positive[i] for i in keep],
                    [trips.negative[i] for i in keep], trips.source, trips.sha256), dropped
