"""Stage image-caption paraphrase triplets (issue 26) from the COCO 2017 val captions.

Run once, by hand, after `fetch`ing `ruizewang/evaluate`; it writes `data/para/coco/triplets.csv.gz` and a
byte-exact gzip copy of the source file under `data/raw/`, and prints the counts that data/PROVENANCE.md
(section h) records. Without the snapshot it reads that copy instead (same bytes, same output). Not part of any
run or test (the staged file is).

Why: captions are the largest genre of STS-B (its images and MSRvid subsets) and of SICK, and the sets STS12
MSRvid and STS14/15 images; five people captioned each COCO image, so two captions of one image are a loose
paraphrase. The hard negative is a caption of *another* image that shares words with the anchor (so the pair is
not told apart by topic words alone), taken from the middle of the overlap ranking, not its top, where COCO's
many near-identical scenes would make false negatives. An image with any caption of an evaluation or selection
set is left out whole.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_nli import DATA, source_bytes, write_triplets  # noqa: E402

from bellm.leakage import held_out, normalize  # noqa: E402

REPO = "ruizewang/evaluate"
PATH = "annotations/captions_val2017.json"
SEED = 26
PER_IMAGE = 2  # triplets per image: (c0, c1), (c2, c3) of its shuffled captions
RANK = 5  # the hard negative: the RANK-th most word-sharing caption of another image ...
MAX_JACCARD = 0.5  # ... among those sharing at most half their content words with the anchor
COMMON = 1500  # words in more captions than this ("a", "man", "of") do not index candidates
OUT = DATA / "para" / "coco" / "triplets.csv.gz"


def words(text: str) -> frozenset[str]:
    return frozenset(normalize(text).split())


def main() -> None:
    data = json.loads(source_bytes(REPO, PATH).decode("utf-8"))
    banned = held_out().sentences
    by_image: dict[int, list[str]] = defaultdict(list)
    for a in data["annotations"]:
        by_image[a["image_id"]].append(" ".join(a["caption"].split()))
    n_captions = sum(map(len, by_image.values()))
    images = {i: c for i, c in sorted(by_image.items()) if not any(normalize(x) in banned for x in c)}
    captions = [(i, c) for i, cs in images.items() for c in dict.fromkeys(cs)]  # (image, caption), no repeats
    bags = [words(c) for _, c in captions]
    df: dict[str, int] = defaultdict(int)
    for b in bags:
        for w in b:
            df[w] += 1
    index: dict[str, list[int]] = defaultdict(list)
    for k, b in enumerate(bags):
        for w in b:
            if df[w] <= COMMON:
                index[w].append(k)
    rng = random.Random(SEED)
    images_of: dict[str, set[int]] = defaultdict(set)
    for i, cs in by_image.items():
        for c in cs:
            images_of[normalize(c)].add(i)
    cap_images = [images_of[normalize(c)] for _, c in captions]  # every image each caption's text captions
    of_image: dict[int, list[int]] = defaultdict(list)
    for k, (i, _) in enumerate(captions):
        of_image[i].append(k)
    trips: list[tuple[str, str, str]] = []
    for i in images:
        ks = of_image[i][:]
        rng.shuffle(ks)
        for a, p in list(zip(ks[0::2], ks[1::2], strict=False))[:PER_IMAGE]:
            # a text can caption several images: no negative shares an image with the anchor or the positive
            own = cap_images[a] | cap_images[p]
            cands = {k for w in bags[a] if df[w] <= COMMON for k in index[w] if not cap_images[k] & own}
            scored = sorted((-len(bags[a] & bags[k]) / len(bags[a] | bags[k]), k) for k in cands)
            scored = [(s, k) for s, k in scored if -s <= MAX_JACCARD]
            if len(scored) < RANK:
                continue
            trips.append((captions[a][1], captions[p][1], captions[scored[RANK - 1][1]][1]))
    rng.shuffle(trips)  # a capped head (data.max_train_triplets) is then a fair sample of every image
    write_triplets(OUT, [(*t, f"{REPO}:{PATH}") for t in trips])
    print(f"{n_captions} captions of {len(by_image)} images -> {len(by_image) - len(images)} images dropped "
          f"(a caption in an evaluation or selection set) -> {len(trips)} triplets")
    print(f"sha256 {OUT.relative_to(DATA)} {hashlib.sha256(OUT.read_bytes()).hexdigest()} {OUT.stat().st_size}")


if __name__ == "__main__":
    main()
