"""Stage an unseen-domain selection set (issue 26): SemEval STS 2012's SMTeuroparl *train* split.

The recipe trains on STS-B/SICK-R pairs and NLI triplets; none of them holds Europarl text, and the STS12 test
sets (SMTeuroparl test among them) only report. STS 2012's own train split of SMTeuroparl (734 pairs of WMT 2008
Europarl MT output against references, scored 0-5 by the STS annotators) is therefore a *dev* set of a domain
the model never trains on: a selection signal beside the in-domain STS-B dev / SICK-R trial and the NLI dev.

Run once, by hand, after `fetch`ing `brmson/dataset-sts`; it writes `data/sts/europarl/dev.tsv` and byte-exact
gzip copies of the source file and its readme under `data/raw/`, and prints what data/PROVENANCE.md records.
Deterministic. Not part of any run or test (the staged file is).
"""

from __future__ import annotations

import collections
import gzip
import hashlib

from stage_nli import DATA, raw_copy  # same directory: run as `python scripts/stage_europarl_dev.py`

from bellm.data import load_triplets, read_pairs
from bellm.leakage import held_out, held_out_files, normalize
from bellm.sts import task_files

REPO = "brmson/dataset-sts"
SOURCE = "data/sts/semeval-sts/2012/SMTeuroparl.train.tsv"
NOTICE = "data/sts/semeval-sts/2012/00-readme.train.txt"
# Every file any profile trains on: a dev row holding one of their sentences is dropped too.
TRAIN_PAIRS = ("sts/stsb/train.tsv", "sts/sickr/train.tsv")
TRAIN_TRIPLETS = ("nli/train/triplets.csv.gz",)


def main() -> None:
    raw_copy(REPO, NOTICE)
    text = gzip.decompress(raw_copy(REPO, SOURCE).read_bytes()).decode("utf-8")
    trained: set[str] = set()
    for rel in TRAIN_PAIRS:
        p = read_pairs(DATA / rel)
        trained.update(map(normalize, [*p.sentence1, *p.sentence2]))
    for rel in TRAIN_TRIPLETS:
        t = load_triplets(DATA / rel)
        trained.update(map(normalize, [*t.anchor, *t.positive, *t.negative]))
    (out,) = task_files("europarl_dev")  # data/sts/europarl/dev.tsv
    index = held_out([f for f in held_out_files() if f.resolve() != out.resolve()])  # every set but this one
    taken = index.sentences | trained  # a dev row may hold none of these
    kept, dropped, stripped = [], [], 0
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        score, a, b = line.split("\t")  # exactly 3 fields on every line
        float(score)
        stripped += (a != a.strip()) + (b != b.strip())
        a, b = a.strip(), b.strip()
        if {normalize(a), normalize(b)} & taken:
            dropped.append(n)
            continue
        kept.append(f"{score}\t{a}\t{b}")
    out.parent.mkdir(parents=True, exist_ok=True)
    body = "score\tsentence1\tsentence2\n" + "".join(r + "\n" for r in kept)
    out.write_text(body, encoding="utf-8")
    hist = collections.Counter(round(float(r.split("\t")[0])) for r in kept)
    print(f"rows {len(kept)} dropped (source lines) {dropped} sentences stripped {stripped}")
    print("scores rounded:", sorted(hist.items()))
    print("sha256", hashlib.sha256(body.encode()).hexdigest())


if __name__ == "__main__":
    main()
