"""Stage the NLI training and selection data (issue 26) from public repository snapshots.

Run once, by hand, after `fetch`ing the four repositories (paths below); it writes
`data/nli/train/triplets.csv.gz`, `data/nli/train/pairs.tsv.gz`, `data/nli/dev/pairs.tsv` and byte-exact gzip
copies of every source file under `data/raw/`, and prints the counts that data/PROVENANCE.md records. Without the
snapshots it reads those byte-exact copies instead (same bytes, same output). Deterministic: the same sources give
the same bytes. Not part of any run or test (the staged files are).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import random
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bellm.data import Pairs, Triplets
from bellm.leakage import HeldOut, filter_pairs, filter_triplets, held_out, held_out_files, normalize
from bellm.nli import LABELS as SCORE_LABELS
from bellm.nli import SCORES, NliPair, dedupe_triplets, read_nli, scored_pairs, triplets_from_pairs

MIRROR = Path("/work/.mirror")
TEN = "google-research-datasets/Textual-Entailment-New-Protocols"
MNLI = "felipessalvatore/NLI_datasets"
CAT = "academic-repository/cat"
CAD = "acmi-lab/counterfactually-augmented-data"
PROTOCOLS = ("base", "contrast", "edit_other", "edit_premise")
TRAIN = [(TEN, f"data/{p}/train.tsv") for p in PROTOCOLS] + [
    (MNLI, "nli_datasets/mnli/dev.csv"), (CAT, "data/snli/train.csv"), (CAT, "data/snli/test.csv"),
    (CAD, "NLI/all_combined/train.tsv"),
]
DEV = [(TEN, f"data/{p}/val.tsv") for p in PROTOCOLS]
# The sources' own readme/licence texts, kept beside the data (TEN has no licence file: its README says what
# is known).
NOTICES = [(TEN, "README.md"), (MNLI, "LICENSE"), (MNLI, "README.md"), (CAT, "LICENSE"), (CAD, "LICENSE"),
           (CAD, "README.md")]
# academic-repository/cat stores SNLI without a header: label id, label id, premise, hypothesis. The ids were
# read off the rows (1 neutral, 2 contradiction, 3 entailment) and checked on samples (PROVENANCE.md).
DEV_PAIRS = 1500
CAT_LABELS = {"1": "neutral", "2": "contradiction", "3": "entailment"}
DATA = Path(__file__).resolve().parent.parent / "data"


def git(repo: str, *args: str) -> bytes:
    d = MIRROR / repo.replace("/", "+") / "repo"
    return subprocess.run(["git", "-C", str(d), *args], check=True, capture_output=True).stdout


def write_gz(out: Path, data: bytes) -> None:
    """gzip -9 with mtime 0: the same data always gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(data)
    out.write_bytes(buf.getvalue())


def write_triplets(out: Path, rows: Iterable[tuple[str, str, str, str]]) -> None:
    """A gzipped triplet CSV (`sent0,sent1,hard_neg,source`, the columns `bellm.data.read_triplets` reads)."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sent0", "sent1", "hard_neg", "source"])
    w.writerows(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_gz(out, buf.getvalue().encode("utf-8"))


def source_bytes(repo: str, path: str) -> bytes:
    """A source file's bytes: from the snapshot when it is here (its gzip -9 copy, mtime 0, written under
    data/raw/<owner>_<repo>/<path>.gz), else from that staged copy; its sha256 and size printed (stderr) for
    comparison with PROVENANCE.md."""
    out = DATA / "raw" / repo.replace("/", "_") / (path + ".gz")
    if (MIRROR / repo.replace("/", "+") / "repo").is_dir():
        data = git(repo, "show", f"HEAD:{path}")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_gz(out, data)
        commit = git(repo, "rev-parse", "HEAD").decode().strip()[:12]
    else:
        data, commit = gzip.decompress(out.read_bytes()), "(staged copy)"
    print(f"| `{repo}` | `{commit}` | `{path}` | {hashlib.sha256(data).hexdigest()} | {len(data)} |", file=sys.stderr)
    return data


def raw_copy(repo: str, path: str) -> Path:
    """`source_bytes`, for readers that take the staged gzip copy's path."""
    source_bytes(repo, path)
    return DATA / "raw" / repo.replace("/", "_") / (path + ".gz")


def read_ten(gz: Path) -> list[NliPair]:
    """The New-Protocols TSVs were written with CSV quoting (quoted fields hold tabs and doubled quotes), unlike
    MNLI's own TSVs (no quoting, which `bellm.nli.read_nli` reads): parse them with quoting."""
    text = gzip.decompress(gz.read_bytes()).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_MINIMAL, strict=True))
    header = rows[0]
    ip, ih, il = header.index("sentence1"), header.index("sentence2"), header.index("gold_label")
    out = []
    for i, f in enumerate(rows[1:], 2):
        if len(f) != len(header):
            raise SystemExit(f"{gz}: row {i}: {len(f)} fields")
        label = f[il].strip()
        if label not in SCORE_LABELS:
            raise SystemExit(f"{gz}: row {i}: label {label!r}")
        p, h = " ".join(f[ip].split()), " ".join(f[ih].split())  # tabs/newlines inside a quoted field
        if p and h:
            out.append(NliPair(p, h, label))
    return out


def read_source(repo: str, path: str) -> list[NliPair]:
    gz = raw_copy(repo, path)
    if repo == TEN:
        return read_ten(gz)
    if repo != CAT:
        return read_nli(gz)
    rows = []
    for i, line in enumerate(gzip.decompress(gz.read_bytes()).decode("utf-8").split("\n"), 1):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 4 or f[0] != f[1] or f[0] not in CAT_LABELS:
            raise SystemExit(f"{gz}:{i}: unexpected row {line[:80]!r}")
        rows.append(NliPair(f[2].strip(), f[3].strip(), CAT_LABELS[f[0]]))
    return rows


def main() -> None:
    for repo, path in NOTICES:
        raw_copy(repo, path)
    dev_pairs = [p for repo, path in DEV for p in read_source(repo, path)]
    sts_index = held_out([f for f in held_out_files() if "nli" not in f.parts])
    scored = scored_pairs(dev_pairs)
    random.Random(26).shuffle(scored)  # head(N) of the file is then a fair sample for capped scoring
    dev = Pairs([s[1] for s in scored], [s[2] for s in scored], np.array([s[0] for s in scored]))
    dev, dropped_dev = filter_pairs(dev, sts_index)
    # Training excludes every val sentence; the staged dev keeps a fair head of DEV_PAIRS, so each gate
    # evaluation (the flow scores the whole decision suite) stays ~3k sentences.
    dev_sentences = {normalize(x) for x in dev.sentence1 + dev.sentence2}
    dev = dev.head(DEV_PAIRS)
    dev_file = DATA / "nli" / "dev" / "pairs.tsv"
    dev_file.parent.mkdir(parents=True, exist_ok=True)
    with dev_file.open("w", newline="") as f:
        f.write("score\tsentence1\tsentence2\n")
        for s, a, b in zip(dev.scores, dev.sentence1, dev.sentence2, strict=True):
            assert "\t" not in a + b and "\n" not in a + b
            f.write(f"{int(s)}\t{a}\t{b}\n")
    print(f"dev: {len(dev_pairs)} labelled rows -> {len(scored)} unique pairs ({dropped_dev} in an STS evaluation "
          f"set) -> the first {len(dev)} staged")

    per_source: list[tuple[str, int, int]] = []
    trips: list[tuple[str, str, str, str]] = []
    labelled: list[tuple[NliPair, str]] = []
    for repo, path in TRAIN:
        rows = read_source(repo, path)
        t = triplets_from_pairs(rows)
        per_source.append((f"{repo}:{path}", len(rows), len(t)))
        trips.extend((*x, f"{repo}:{path}") for x in t)
        labelled.extend((r, f"{repo}:{path}") for r in rows)
    write_train_pairs(labelled, sts_index, dev_sentences)
    unique = dedupe_triplets(trips)
    src = {tuple(t[:3]): t[3] for t in reversed(trips)}
    tr = Triplets([t[0] for t in unique], [t[1] for t in unique], [t[2] for t in unique])
    tr, dropped_sts = filter_triplets(tr, sts_index)
    keep = [(a, p, n) for a, p, n in zip(tr.anchor, tr.positive, tr.negative, strict=True)
            if not {normalize(a), normalize(p), normalize(n)} & dev_sentences]
    out = DATA / "nli" / "train" / "triplets.csv.gz"
    write_triplets(out, [(a, p, n, src[(a, p, n)]) for a, p, n in keep])
    for name, rows, t in per_source:
        print(f"train source {name}: {rows} labelled rows -> {t} triplets")
    print(f"train: {len(trips)} triplets -> {len(unique)} unique -> {len(tr)} after STS held-out "
          f"({dropped_sts} dropped) -> {len(keep)} after NLI dev ({len(tr) - len(keep)} dropped)")
    print(f"sha256 {out.relative_to(DATA)} {hashlib.sha256(out.read_bytes()).hexdigest()}")
    print(f"sha256 {dev_file.relative_to(DATA)} {hashlib.sha256(dev_file.read_bytes()).hexdigest()}")


def write_train_pairs(labelled: list[tuple[NliPair, str]], sts_index: HeldOut, dev_sentences: set[str]) -> None:
    """Every labelled training pair as a scored pair (entailment 2 > neutral 1 > contradiction 0; CoSENT reads only
    the order): the neutral rows and the premises with one label, which make no triplet, train too. Deduplicated
    by normalised (premise, hypothesis) in source order; a pair with any sentence of an evaluation or selection set
    or of the NLI val files is dropped (premises included, as for the triplets); shuffled with seed 26 so a capped
    head (`data.max_train_pairs`) is a fair sample of every source and label."""
    source = {}
    for r, src in labelled:
        source.setdefault((normalize(r.premise), normalize(r.hypothesis)), src)
    scored = scored_pairs(r for r, _ in labelled)
    banned = sts_index.sentences | dev_sentences
    keep = [(s, a, b) for s, a, b in scored if not {normalize(a), normalize(b)} & banned]
    random.Random(26).shuffle(keep)
    out = DATA / "nli" / "train" / "pairs.tsv.gz"
    buf = io.StringIO(newline="")
    buf.write("score\tsentence1\tsentence2\tsource\n")
    for s, a, b in keep:
        assert "\t" not in a + b and "\n" not in a + b
        buf.write(f"{int(s)}\t{a}\t{b}\t{source[(normalize(a), normalize(b))]}\n")
    write_gz(out, buf.getvalue().encode("utf-8"))
    labels = {k: sum(1 for s, _, _ in keep if s == v) for k, v in SCORES.items()}
    print(f"train pairs: {len(labelled)} labelled rows -> {len(scored)} unique -> {len(keep)} without a held-out or "
          f"NLI val sentence ({len(scored) - len(keep)} dropped); labels {labels}")
    print(f"sha256 {out.relative_to(DATA)} {hashlib.sha256(out.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
