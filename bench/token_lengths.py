"""How long the prompted sentences are, so `encoder.max_length` is chosen from data instead of a trial.

    .venv/bin/python bench/token_lengths.py > bench/results/token_lengths.jsonl   # every STS file

Prompted with the default template and tokenised as the encoder does (no cap), per file: the number of
texts, token-count percentiles and the share of texts a given `max_length` would cut. A cap above every
text changes nothing: a batch is padded to its own longest row, never to `max_length`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from bellm.data import read_pairs
from bellm.encoder import hf_backend_tokenizer
from bellm.models import DEFAULT_MODEL, resolve_source
from bellm.paths import STS_DIR, portable_path
from bellm.prompts import DEFAULT_PROMPT, resolve_prompt
from bellm.tokenize import encode_one

UNCAPPED = 8192  # the largest max_length the config accepts
FILES = sorted(STS_DIR.glob("*/*.tsv"))  # training, dev and test files of STS-B and SICK-R; STS12-16 sub-sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caps", default="32,48,64", help="max_length values to report the cut share of")
    args = ap.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    tok = hf_backend_tokenizer(resolve_source(DEFAULT_MODEL).path)
    template = resolve_prompt(DEFAULT_PROMPT)
    for path in FILES:
        pairs = read_pairs(path)
        n = np.array([len(encode_one(tok, template, t, UNCAPPED).ids) for t in pairs.sentence1 + pairs.sentence2])
        out = {"file": portable_path(path), "texts": len(n),
               "tokens_p50_p90_p99_max": [int(np.percentile(n, q)) for q in (50, 90, 99)] + [int(n.max())],
               "cut_share": {c: round(float((n > c).mean()), 5) for c in caps}}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
