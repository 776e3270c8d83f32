"""Stage news-headline paraphrase triplets (issue 26) from the Twitter URL corpus (TwitterPPDB) train split.

Run once, by hand, after `fetch`ing `castorini/data`; it writes `data/para/twitter_url/triplets.csv.gz` and
byte-exact gzip copies of the source files under `data/raw/`, and prints the counts that data/PROVENANCE.md
(section g) records. Without the snapshot it reads those copies instead (same bytes, same output). Not part of
any run or test (the staged file is).

Why this corpus: after the held-out filter no training sentence is a news headline (STS-B train keeps only its
MSRvid and MSRpar pairs), while headlines are a third of STS-B and of STS13-16. The corpus pairs tweets that
link the same news article, judged paraphrase or not by six annotators; a non-paraphrase of the same article
is a hard negative on the same topic, so each anchor gives (anchor, paraphrase, non-paraphrase) triplets.
Its test split is MTEB's TwitterURLCorpus: read only to drop every training row that shares a sentence with it.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_nli import DATA, source_bytes, write_triplets  # noqa: E402

from bellm.leakage import held_out, normalize  # noqa: E402

REPO = "castorini/data"
TRAIN = [f"twitterPPDB/train/{f}" for f in ("a.toks", "b.toks", "sim.txt")]
TEST = [f"twitterPPDB/test/{f}" for f in ("a.toks", "b.toks")]
NOTICES = ["twitterPPDB/README.md"]
SEED = 26
OUT = DATA / "para" / "twitter_url" / "triplets.csv.gz"


def lines(path: str) -> list[str]:
    rows = source_bytes(REPO, path).decode("utf-8").split("\n")
    return rows[:-1] if rows and rows[-1] == "" else rows


def main() -> None:
    for path in NOTICES:
        source_bytes(REPO, path)
    a, b, sim = (lines(p) for p in TRAIN)
    if not len(a) == len(b) == len(sim):
        raise SystemExit(f"{REPO}: train files differ in length: {len(a)}, {len(b)}, {len(sim)}")
    test_sentences = {normalize(s) for p in TEST for s in lines(p)}
    banned = held_out().sentences | test_sentences
    groups: dict[str, tuple[list[str], list[str]]] = {}  # anchor -> (non-paraphrases, paraphrases), first-seen order
    seen: set[tuple[str, str]] = set()
    dropped_banned = dropped_dup = 0
    for i, (x, y, label) in enumerate(zip(a, b, sim, strict=True), 1):
        if label not in ("0", "1"):
            raise SystemExit(f"{REPO}:{TRAIN[2]}:{i}: label {label!r} is not 0 or 1")
        x, y = " ".join(x.split()), " ".join(y.split())
        nx, ny = normalize(x), normalize(y)
        if not nx or not ny or nx == ny or (nx, ny) in seen:
            dropped_dup += 1
            continue
        seen.add((nx, ny))
        if nx in banned or ny in banned:
            dropped_banned += 1
            continue
        groups.setdefault(x, ([], []))[int(label)].append(y)
    rng = random.Random(SEED)
    trips: list[tuple[str, str, str]] = []
    for anchor, (neg, pos) in groups.items():
        if not neg or not pos:
            continue
        negs = neg[:]
        rng.shuffle(negs)
        trips += [(anchor, p, negs[j % len(negs)]) for j, p in enumerate(pos)]
    rng.shuffle(trips)  # a capped head (data.max_train_triplets) is then a fair sample of every article
    write_triplets(OUT, [(*t, f"{REPO}:twitterPPDB/train") for t in trips])
    anchors = sum(1 for neg, pos in groups.values() if neg and pos)
    print(f"train: {len(a)} rows ({sim.count('1')} paraphrase) -> {dropped_dup} empty/identical/duplicate and "
          f"{dropped_banned} with a held-out or TwitterURLCorpus-test sentence dropped -> {len(groups)} anchors, "
          f"{anchors} with a paraphrase and a non-paraphrase -> {len(trips)} triplets")
    print(f"sha256 {OUT.relative_to(DATA)} {hashlib.sha256(OUT.read_bytes()).hexdigest()} {OUT.stat().st_size}")


if __name__ == "__main__":
    main()
