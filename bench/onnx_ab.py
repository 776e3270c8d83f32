"""A/B exported models of the same weights: speed (interleaved rounds) and whether the embeddings are the same.

For a graph change that should not change a number (e.g. `bellm.export.rewrite.pack_heads`, the int8 variant's
shared zero point): export one adapter before and after, then run both directories here. Every round encodes the
same STS-B dev sentences (length-sorted batches, `bellm.runtime.OnnxEncoder`) with each directory in turn, so
drift in machine load hits all alike; reports best and median sentences/s, and max |diff| / min cosine of each
directory's embeddings against the first's. Records the CPU flags and the load average. Quiet machine only.

    .venv/bin/python bench/onnx_ab.py OLD/onnx/int8 NEW/onnx/int8 OLD/onnx/fp32 NEW/onnx/fp32 \\
        --out bench/results/onnx_ab_pack_heads
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import key_cpu_flags, sts_sentences  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="export variant directories (the first is the reference)")
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args()

    from bellm.runtime import OnnxEncoder

    texts = sts_sentences(args.sentences, "dev")
    encs = [OnnxEncoder(d, providers=["CPUExecutionProvider"], threads=args.threads) for d in args.dirs]
    embs = [e.encode(texts, batch_size=args.batch) for e in encs]  # also the warm-up
    rates: list[list[float]] = [[] for _ in encs]
    for _ in range(args.rounds):
        for i, e in enumerate(encs):
            t = time.perf_counter()
            e.encode(texts, batch_size=args.batch)
            rates[i].append(len(texts) / (time.perf_counter() - t))
    rows = []
    for d, emb, r in zip(args.dirs, embs, rates, strict=True):
        rows.append({"dir": str(d), "best_sent_s": round(max(r), 1), "median_sent_s": round(statistics.median(r), 1),
                     "rounds": [round(x, 1) for x in r],
                     "max_abs_diff_vs_first": float(np.abs(emb - embs[0]).max()),
                     "min_cos_vs_first": float((emb * embs[0]).sum(-1).min())})
    result = {"command": "bench/onnx_ab.py " + " ".join(sys.argv[1:]), "sentences": len(texts), "batch": args.batch,
              "threads": args.threads, "cpu_flags": key_cpu_flags(), "loadavg": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# A/B of exported models ({len(texts)} STS-B dev sentences, batch {args.batch}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds; flags {' '.join(result['cpu_flags'])}; load "
          f"{result['loadavg'][0]:.2f})", "",
          "| dir | best sent/s | median sent/s | max abs diff vs first | min cos vs first |",
          "|---|---:|---:|---:|---:|"]
    md += [f"| {r['dir']} | {r['best_sent_s']} | {r['median_sent_s']} | {r['max_abs_diff_vs_first']:.1e} | "
           f"{r['min_cos_vs_first']:.6f} |" for r in rows]
    md += ["", f"`{result['command']}`", ""]
    args.out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
