"""Estimated training minutes of a recipe on a real 2-core AVX2-only CPU, from `train_throughput.py` runs taken
on this machine with the instruction sets capped to AVX2 (see that script's docstring).

Per recipe (a trial of `sweeps/nli.json`): its pair and triplet steps, counted from the training's own batch order
(`bellm.training.batches.batch_stream` over its held-out-filtered data), times the capped s/step of each kind, times
the calibration factor (how much slower the real AVX2 EPYC ran the same fp32 work: its torch fp32 GEMM rate
against the capped one's), plus the dev-curve evaluations (every `train.eval_every` steps, both sentences of
`dev_curve_pairs` pairs) at the AVX2 EPYC's measured PyTorch fp32 encoding rate.

    .venv/bin/python bench/train_budget.py [--factor 1.87] [--encode-rate 21.4]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from itertools import islice
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SPEC = Path(__file__).resolve().parents[1] / "sweeps" / "nli.json"
RECIPES = [  # (trial of sweeps/nli.json, the train_throughput_avx2cap_<key>.json timing its k and LoRA layers)
    ("nli-mix5k-120-k8-mean-lr2e3", "quick"),
    ("nli-mix5k-120-k12-mean-l12-lr2e3", "quick_k12"),
    ("nli-mix5k-104-k12-mean-l12-lr2e3", "quick_k12"),
    ("nli-mix-640-k12-mean-l12-lr2e3-share50", "standard"),
    ("nli-mix-640-k8-mean-lr2e3-share50", "standard_k8"),
    ("nli-mix-416-k12-mean-l12-lr2e3-share50", "standard"),
    ("nli-mix-496-k8-mean-lr2e3-share50", "standard_k8"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=1.87, help="real AVX2 EPYC time / capped time (GEMM ratio)")
    ap.add_argument("--encode-rate", type=float, default=21.4, help="AVX2 EPYC PyTorch fp32 sentences/s")
    args = ap.parse_args()
    sys.path.insert(0, str(SPEC.parents[1]))
    from bellm.sweep import SweepSpec, trial_config
    from bellm.training.batches import DataPosition, batch_stream, load_train_data

    spec = SweepSpec.load(SPEC)
    print(f"factor {args.factor}; dev curve at {args.encode_rate} sentences/s\n")
    print("| recipe (`sweeps/nli.json` trial) | pair / triplet steps | pair s/step | triplet s/step (capped) "
          "| capped train s | est. AVX2 minutes (curve incl.) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, key in RECIPES:
        cfg = trial_config(spec, name)
        r = json.loads((RESULTS / f"train_throughput_avx2cap_{key}.json").read_text())
        timed = (r["k"], r["lora_layers"].split("/")[0])
        if timed != (cfg.encoder.bidirectional_layers, str(cfg.lora.layers)):
            raise SystemExit(f"{key}.json timed k, LoRA layers {timed}, not {name}'s")
        data = load_train_data(cfg.data)
        stream = batch_stream(data, cfg.train.batch_size, cfg.train.seed, DataPosition(0, 0), cfg.data.pair_share)
        steps = Counter(b.kind for b, _ in islice(stream, cfg.train.max_steps))
        p, t = r["s_per_step_by_kind"]["pairs"], r["s_per_step_by_kind"]["triplets"]
        capped = steps["pairs"] * p + steps["triplets"] * t
        curve = cfg.train.max_steps // cfg.train.eval_every * 2 * cfg.dev_curve_pairs / args.encode_rate
        minutes = (capped * args.factor + curve) / 60
        print(f"| `{name}` | {steps['pairs']} / {steps['triplets']} | {p:.2f} | {t:.2f} | {capped:.0f} "
              f"| {minutes:.1f} |")


if __name__ == "__main__":
    main()
