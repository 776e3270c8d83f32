"""What one forward pass of an exported model costs: t ≈ a + b × rows × seq, and what padding costs serving.

Times `OnnxEncoder.run_batch` on rows × seq all-real batches (rows 1..32, seq 16..48, best of `--repeats`,
shapes interleaved in random order so a noisy second hits every shape alike), fits a (ms per pass) and b (ms
per padded token) by least squares, and prints a/b next to `--probes` runs of the server's own start-up
probe (`bellm.serve.batcher.measure_call_overhead`: the same fit over the shapes a server runs). Then, on
the first `--sentences` STS-B test sentences (prompted token lengths): the padding share of arrival-order
batches of `--batch` (what ~16 one-sentence clients give the server), of the same batches cut by
`plan_chunks`, and of the length-sorted batches of 32 that `OnnxEncoder.encode` runs. Take numbers on a
quiet machine only.

    .venv/bin/python bench/pass_cost.py artifacts/runs/<id>/onnx/fp32 [--threads 2] [--out bench/results/pass_cost.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bellm.runtime import OnnxEncoder  # noqa: E402
from bellm.serve.batcher import PROBE_SHAPES, fit_pass_cost, measure_call_overhead, plan_chunks  # noqa: E402
from bellm.tokenize import encode_one  # noqa: E402
from bench.common import sts_sentences  # noqa: E402

ROWS, SEQS = (1, 2, 4, 8, 16, 32), (16, 24, 32, 48)


def fit(enc: OnnxEncoder, repeats: int) -> dict[str, float]:
    """a (ms) and b (ms per padded token) over the shape grid (best of `repeats` per shape, shapes shuffled per
    round), fitted as the server fits its probe (`bellm.serve.batcher.fit_pass_cost`)."""
    shapes = [(r, s) for r in ROWS for s in SEQS]
    times: dict[tuple[int, int], list[float]] = {sh: [] for sh in shapes}
    ones = {sh: np.ones(sh, dtype=np.int64) for sh in shapes}
    enc.run_batch(ones[(4, 24)], ones[(4, 24)], ones[(4, 24)])  # warm-up
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(shapes)
        for sh in shapes:
            t = time.perf_counter()
            enc.run_batch(ones[sh], ones[sh], ones[sh])
            times[sh].append(time.perf_counter() - t)
    best = {sh: min(v) * 1000 for sh, v in times.items()}
    a, b = fit_pass_cost(best)
    pa, pb = fit_pass_cost({sh: best[sh] for sh in PROBE_SHAPES})  # the server probe's shapes, same timings
    return {"a_ms": round(a, 2), "b_ms_per_token": round(b, 4), "a_over_b_tokens": round(a / b, 1),
            "probe_shapes_a_over_b_tokens": round(pa / pb, 1),
            "best_ms": {f"{r}x{s}": round(t, 2) for (r, s), t in sorted(best.items())}}


def padding_share(groups: list[list[int]]) -> float:
    """Padded positions / all positions over batches of token lengths."""
    padded = sum(len(g) * max(g) for g in groups)
    return 1 - sum(map(sum, groups)) / padded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="an ONNX variant directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probes", type=int, default=5, help="start-up probes to run (their spread is reported)")
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="arrival-order batch size the server forms")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    enc = OnnxEncoder(args.export, threads=args.threads)
    cost = fit(enc, args.repeats)
    probes = sorted(measure_call_overhead(enc.run_batch) for _ in range(args.probes))
    texts = sts_sentences(args.sentences)
    lengths = [len(encode_one(enc.tokenizer, enc.template, t, enc.max_length).ids) for t in texts]
    arrival = [lengths[i:i + args.batch] for i in range(0, len(lengths), args.batch)]
    cut = [[g[i] for i in chunk] for g in arrival for chunk in plan_chunks(g, 16384, cost["a_over_b_tokens"])]
    ordered = sorted(lengths, reverse=True)
    sorted32 = [ordered[i:i + 32] for i in range(0, len(ordered), 32)]
    result = {
        "export": args.export, "threads": args.threads, "repeats": args.repeats, **cost,
        "server_probe_tokens": round(float(np.median(probes)), 1),
        "server_probes": [round(p, 1) for p in probes],  # the spread a server's start-up sees
        "lengths": {"mean": round(float(np.mean(lengths)), 1), "min": min(lengths), "max": max(lengths)},
        f"padding_arrival_batches_of_{args.batch}": round(padding_share(arrival), 3),
        f"padding_arrival_batches_of_{args.batch}_cut": round(padding_share(cut), 3),
        "padding_sorted_batches_of_32": round(padding_share(sorted32), 3),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
