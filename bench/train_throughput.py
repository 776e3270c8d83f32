"""LoRA training throughput of the real embedded model on 2 CPU threads (fp32): s/step, tokens/s, peak RSS,
and the fraction of the machine's measured fp32 GEMM rate.

Runs the real training loop (`bellm.training.train`, `quick` profile settings) for a few steps and reads
its per-step log. FLOPs per trained token: forward 2N plus the backward activation gradients 2N, the
usual 6N minus the weight gradients a frozen base does not need (LoRA's own are < 1% of N). With LoRA on
only the last `a` of `L` layers (`lora.layers`, the quick profile: 8 of 30) the backward stops below them:
2N + 2N·a/L. N = non-embedding params; attention's S² terms are ignored (S ≈ 25-40 here). Both the 4N
figure and the effective one are reported.

    .venv/bin/python bench/train_throughput.py [--profile quick] [--steps 6] [--threads 2] [--batch-size 16]

An AVX2-only CPU can be approximated on an AVX-512 one by capping the instruction sets torch's kernels, oneDNN
and MKL may use (`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`, with
`--set train.precision=fp32`, what `auto` picks there); the caps are recorded in the output. It is an
approximation (another core, cache and clock), so BENCHMARKS.md calibrates it against a real AVX2 measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import gemm_gflops, machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", help="the profile whose training settings are timed")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps (the first is excluded as warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the quick profile's")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides k=v")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = ap.parse_args()

    import torch

    from bellm.io import write_json_atomic
    from bellm.profiles import build_config
    from bellm.training import train

    torch.set_num_threads(args.threads)
    gemm = gemm_gflops()
    over = [f"train.max_steps={args.steps}", "train.warmup_steps=0", f"train.num_threads={args.threads}",
            f"train.checkpoint_every={args.steps}", "train.eval_every=null", "train.progress=false", *args.overrides]
    if args.batch_size:
        over.append(f"train.batch_size={args.batch_size}")
    cfg = build_config(args.profile, over)
    with tempfile.TemporaryDirectory(prefix="bellm-train-bench-") as tmp:
        result = train(cfg, Path(tmp))
        steps = [json.loads(x) for x in result.log_path.read_text().splitlines()]
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # GB (ru_maxrss is KiB)
    from bellm.models import load_model

    dec = load_model(cfg.model.source, causal_lm=False)
    non_emb = sum(p.numel() for n, p in dec.named_parameters() if "embed_tokens" not in n)
    timed = steps[1:] or steps
    secs = sum(s["step_s"] for s in timed)
    tokens = sum(s["tokens"] for s in timed)
    tok_s = tokens / secs
    n_layers = dec.config.num_hidden_layers
    adapted = cfg.lora.layers or n_layers
    flops_per_token = 2 * non_emb + 2 * non_emb * adapted / n_layers
    gflops = flops_per_token * tok_s / 1e9
    gflops_4n = 4 * non_emb * tok_s / 1e9
    kinds = ("pairs", "triplets")
    n_kind = {k: sum(s["kind"] == k for s in timed) for k in kinds}
    secs_kind = {k: sum(s["step_s"] for s in timed if s["kind"] == k) for k in kinds}
    padded = {k: sum(s["padded_tokens"] for s in timed if s["kind"] == k) for k in kinds}
    caps = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
    out = {
        "profile": args.profile, "overrides": args.overrides, "precision": cfg.train.precision,
        "isa_caps": {k: os.environ[k] for k in caps if k in os.environ},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pooling": cfg.encoder.pooling, "triplets": bool(cfg.data.train_triplets), "pair_share": cfg.data.pair_share,
        "model": cfg.model.source, "k": cfg.encoder.bidirectional_layers, "max_length": cfg.encoder.max_length,
        "batch_size": cfg.train.batch_size, "lora_r": cfg.lora.r, "timed_steps": len(timed),
        "s_per_step": round(secs / len(timed), 3),
        "s_per_step_by_kind": {k: round(secs_kind[k] / max(1, n_kind[k]), 3) for k in kinds},
        # A step's time follows the positions its forward computes (`padded_tokens`: real tokens + each length
        # group's padding, `train.length_chunks`), so bench/train_budget.py scales these rates by each recipe's own.
        "length_chunks": cfg.train.length_chunks,
        "padded_tokens_per_step_by_kind": {k: round(padded[k] / max(1, n_kind[k]), 1) for k in kinds},
        "s_per_1k_padded_tokens_by_kind": {k: round(1000 * secs_kind[k] / max(1, padded[k]), 4) for k in kinds},
        "tokens_per_s": round(tok_s, 1), "non_embedding_params": non_emb,
        "lora_layers": f"{adapted}/{n_layers}", "flops_per_token": "2N + 2N*adapted/layers",
        "model_gflops": round(gflops, 2), "gemm_gflops": round(gemm, 1), "fraction_of_gemm": round(gflops / gemm, 3),
        "model_gflops_4n": round(gflops_4n, 2), "fraction_of_gemm_4n": round(gflops_4n / gemm, 3),
        "peak_rss_gb": round(peak_rss, 2),
        "machine": machine(),
    }
    print(json.dumps(out, indent=2))
    write_json_atomic(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
