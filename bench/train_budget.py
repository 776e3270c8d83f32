"""Estimated training minutes of a recipe on a real 2-core AVX2-only CPU, from `train_throughput.py` runs taken
on this machine with the instruction sets capped to AVX2 (see that script's docstring).

A step's time follows the positions its forward computes (real tokens plus each length group's padding,
`train.length_chunks`), so per recipe (a trial of `sweeps/nli.json`): the padded tokens of each of its pair and
triplet steps, counted from the training's own batch order and micro-batches (`bellm.training.batches`), times the
capped seconds per padded token of each kind (timed at the same k, LoRA layers and length groups), times the
calibration factor (how much slower the real AVX2 EPYC ran the same fp32 work: its torch fp32 GEMM rate against
the capped one's), plus the dev-curve evaluations (every `train.eval_every` steps, both sentences of
`dev_curve_pairs` pairs) at the AVX2 EPYC's measured PyTorch fp32 encoding rate. Each recipe is also estimated as
one padded batch a step (`length_chunks` 1, how every run trained until session 9).

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
# Trials of sweeps/nli.json; each is timed by train_throughput_avx2cap_k<k>_g<length groups>.json (its k and LoRA
# layers, at one padded batch a step and at the trial's own length groups; a missing one-batch timing is skipped)
RECIPES = [  # the profiles' trials and the session-9 candidates
    "nli-mix5k-104-k12-mean-l12-lr2e3-g4",
    "nli-mix5k-144-k12-mean-l12-lr2e3-g4",
    "nli-mix5k-120-k16-mean-l16-lr2e3-g4",
    "nli-mix-416-k12-mean-l12-lr2e3-share50-g4",
    "nli-mix-704-k12-mean-l12-lr2e3-share50-g4",
    "nli-mix-576-k16-mean-l16-lr2e3-share50-g4",
]


def padded_tokens(cfg, tok, groups: list[int]) -> tuple[dict[int, dict[str, int]], Counter]:  # noqa: ANN001
    """Σ positions the forward computes over the recipe's steps per batch kind, for each length-group setting in
    `groups`, and the steps per kind (one pass over the recipe's batch order)."""
    from bellm.training.batches import DataPosition, batch_stream, load_train_data, make_micro_batch

    data = load_train_data(cfg.data)
    stream = batch_stream(data, cfg.train.batch_size, cfg.train.seed, DataPosition(0, 0), cfg.data.pair_share)
    out, steps = {g: {"pairs": 0, "triplets": 0} for g in groups}, Counter()
    for b, _ in islice(stream, cfg.train.max_steps):
        steps[b.kind] += 1
        for g in groups:
            mb = make_micro_batch(data, b.kind, b.indices, tok, cfg.encoder.template, cfg.encoder.max_length, g)
            out[g][b.kind] += mb.padded_tokens
    return out, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--factor", type=float, default=1.87, help="real AVX2 EPYC time / capped time (GEMM ratio)")
    ap.add_argument("--encode-rate", type=float, default=21.4, help="AVX2 EPYC PyTorch fp32 sentences/s")
    ap.add_argument("--trial", action="append", default=[], help="estimate these sweeps/nli.json trials too")
    args = ap.parse_args()
    sys.path.insert(0, str(SPEC.parents[1]))
    from bellm.encoder import hf_backend_tokenizer
    from bellm.models import resolve_source
    from bellm.sweep import SweepSpec, trial_config

    spec = SweepSpec.load(SPEC)
    recipes = RECIPES + args.trial
    print(f"factor {args.factor}; dev curve at {args.encode_rate} sentences/s\n")
    print("| recipe (`sweeps/nli.json` trial) | pair / triplet steps | length groups | padded tokens per pair / "
          "triplet step | capped s per 1k padded tokens, pairs / triplets | capped train s "
          "| est. AVX2 minutes (curve incl.) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    tokenizers: dict[str, object] = {}
    for name in recipes:
        cfg = trial_config(spec, name)
        if cfg.model.source not in tokenizers:
            tokenizers[cfg.model.source] = hf_backend_tokenizer(resolve_source(cfg.model.source).path)
        timings = {}
        for groups in sorted({1, cfg.train.length_chunks}):
            path = RESULTS / f"train_throughput_avx2cap_k{cfg.encoder.bidirectional_layers}_g{groups}.json"
            if groups != cfg.train.length_chunks and not path.is_file():
                continue  # no one-batch timing of this k
            r = json.loads(path.read_text())
            timed = (r["k"], r["lora_layers"].split("/")[0], r["length_chunks"])
            if timed != (cfg.encoder.bidirectional_layers, str(cfg.lora.layers), groups):
                raise SystemExit(f"{path.name} timed k, LoRA layers, length groups {timed}, not {name}'s at {groups}")
            timings[groups] = r
        padded, steps = padded_tokens(cfg, tokenizers[cfg.model.source], list(timings))
        for groups, r in timings.items():
            toks = padded[groups]
            rate = r["s_per_1k_padded_tokens_by_kind"]
            capped = sum(toks[k] / 1000 * rate[k] for k in toks)
            curve = cfg.train.max_steps // cfg.train.eval_every * 2 * cfg.dev_curve_pairs / args.encode_rate
            minutes = (capped * args.factor + curve) / 60
            per = " / ".join(f"{toks[k] / max(1, steps[k]):.0f}" for k in ("pairs", "triplets"))
            print(f"| `{name}` | {steps['pairs']} / {steps['triplets']} | {groups} | {per} "
                  f"| {rate['pairs']:.2f} / {rate['triplets']:.2f} | {capped:.0f} | {minutes:.1f} |")


if __name__ == "__main__":
    main()
