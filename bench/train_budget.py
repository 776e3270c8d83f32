"""Estimated training minutes of a recipe on a real 2-core AVX2-only CPU, from `train_throughput.py` runs taken
on this machine with the instruction sets capped to AVX2 (see that script's docstring).

Per recipe: pair steps x pair s/step + triplet steps x triplet s/step (the step mix follows `data.pair_share`, or
the rows' proportion without it), times the calibration factor (how much slower the real AVX2 EPYC ran the same
fp32 work: its torch fp32 GEMM rate against the capped one's), plus the dev-curve evaluations (500 sentences
each, every `train.eval_every` steps, at the AVX2 EPYC's measured PyTorch fp32 encoding rate).

    .venv/bin/python bench/train_budget.py [--factor 1.87] [--encode-rate 21.4]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
PAIRS = 5308  # filtered STS-B + SICK-R train pairs (data/PROVENANCE.md)
QUICK_SHARE = round(-(-PAIRS // 16) / (-(-PAIRS // 16) + -(-5000 // 16)), 3)  # quick: rows in proportion, 5k cap
RECIPES = [  # (name, throughput json key, steps, share of pair steps)
    ("quick k=8 (profile until session 8), 120 steps", "quick", 120, QUICK_SHARE),
    ("quick k=12 + LoRA 12, 120 steps", "quick_k12", 120, QUICK_SHARE),
    ("quick k=12 + LoRA 12, 104 steps", "quick_k12", 104, QUICK_SHARE),
    ("standard k=12 + LoRA 12 (session 7), 640 steps", "standard", 640, 0.5),
    ("standard k=8, 640 steps", "standard_k8", 640, 0.5),
    ("standard k=12 + LoRA 12, 416 steps", "standard", 416, 0.5),
    ("standard k=8, 496 steps", "standard_k8", 496, 0.5),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=1.87, help="real AVX2 EPYC time / capped time (GEMM ratio)")
    ap.add_argument("--encode-rate", type=float, default=21.4, help="AVX2 EPYC PyTorch fp32 sentences/s")
    ap.add_argument("--eval-every", type=int, default=30)
    args = ap.parse_args()
    print(f"factor {args.factor}, curve: 500 sentences every {args.eval_every} steps at {args.encode_rate} sent/s\n")
    print("| recipe | pair s/step | triplet s/step (capped) | capped train s | est. AVX2 minutes (curve incl.) |")
    print("|---|---:|---:|---:|---:|")
    for name, key, steps, share in RECIPES:
        r = json.loads((RESULTS / f"train_throughput_avx2cap_{key}.json").read_text())
        p, t = r["s_per_step_by_kind"]["pairs"], r["s_per_step_by_kind"]["triplets"]
        capped = steps * (share * p + (1 - share) * t)
        curve = steps // args.eval_every * 500 / args.encode_rate
        minutes = (capped * args.factor + curve) / 60
        print(f"| {name} | {p:.2f} | {t:.2f} | {capped:.0f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
