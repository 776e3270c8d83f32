"""What the frozen-prefix cache (`bellm.frozen_prefix`) saves a sweep trial on the embedded `quick` recipe (28 layers,
LoRA on the top 8, so the bottom 20 are shared by every trial), on 2 CPU threads, fp32.

- Evaluation: `--sentences` STS-B test sentences encoded with the cache off, then on twice (the first pass fills
  it, as a sweep's first trial does; the second reads it, as every later trial does). The encoder has the
  trained trials' frozen prefix (the layers below `lora.layers`); its embeddings are compared with the direct
  path's.
- Training: `--steps` steps of the real loop (`bellm.training.train`, the `quick` profile) with the cache off,
  then on twice with the same seed (the second run meets the first run's sentences, as a sweep's later trials
  do at the same seed). The first step of each run is excluded (warm-up). The adapters are compared.

Take numbers on a quiet machine only.

    .venv/bin/python bench/prefix_cache.py [--sentences 512] [--steps 6] [--threads 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, sts_sentences  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--steps", type=int, default=6, help="training steps per run (the first is warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "prefix_cache.json"))
    args = ap.parse_args()

    import numpy as np
    import torch
    from safetensors.torch import load_file

    from bellm import frozen_prefix
    from bellm.config import PREFIX_CACHE_GB
    from bellm.encoder import load_encoder
    from bellm.frozen_prefix import FrozenPrefix
    from bellm.io import write_json_atomic
    from bellm.profiles import build_config
    from bellm.training import train

    torch.set_num_threads(args.threads)
    cfg = build_config("quick", [f"train.max_steps={args.steps}", "train.warmup_steps=0", "train.eval_every=null",
                                 f"train.checkpoint_every={args.steps}", "train.progress=false",
                                 f"train.num_threads={args.threads}"])
    frozen = cfg.encoder.keep_layers - cfg.lora.layers  # what a trained trial's merged encoder keeps frozen
    texts = sts_sentences(args.sentences)

    enc = load_encoder(cfg.encoder_config)
    enc.module.backbone.prefix = FrozenPrefix(min(frozen, enc.num_layers - enc.k))
    frozen_prefix.disable()
    enc.encode(texts[:32])  # warm-up
    t = time.perf_counter()
    direct = enc.encode(texts, show_progress=False)
    t_direct = time.perf_counter() - t
    frozen_prefix.enable(PREFIX_CACHE_GB)
    t = time.perf_counter()
    fill = enc.encode(texts, show_progress=False)
    t_fill = time.perf_counter() - t
    t = time.perf_counter()
    warm = enc.encode(texts, show_progress=False)
    t_warm = time.perf_counter() - t
    stored = frozen_prefix.stats()
    frozen_prefix.disable()
    del enc

    def run(tmp: Path, name: str) -> tuple[float, dict]:
        res = train(cfg, tmp / name)
        steps = [json.loads(x) for x in res.log_path.read_text().splitlines()][1:]
        weights = load_file(str(res.adapter_dir / "adapter_model.safetensors"))
        return sum(s["step_s"] for s in steps) / len(steps), weights

    with tempfile.TemporaryDirectory(prefix="bellm-prefix-bench-") as tmp:
        s_off, a_off = run(Path(tmp), "off")
        frozen_prefix.enable(PREFIX_CACHE_GB)
        s_cold, _ = run(Path(tmp), "cold")
        s_warm, a_warm = run(Path(tmp), "warm")
        frozen_prefix.disable()
    adapter_diff = max((a_off[k] - a_warm[k]).abs().max().item() for k in a_off)

    out = {
        "command": "bench/prefix_cache.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "threads": args.threads,
        "layers": cfg.encoder.keep_layers,
        "frozen_prefix_layers": frozen,
        "eval": {
            "sentences": len(texts),
            "direct_s": round(t_direct, 2),
            "fill_s": round(t_fill, 2),
            "cached_s": round(t_warm, 2),
            "speedup_cached": round(t_direct / t_warm, 2),
            "max_abs_diff_vs_direct": float(max(np.abs(fill - direct).max(), np.abs(warm - direct).max())),
            "stored_mb": round(stored["bytes"] / 2**20, 1),
            "kb_per_sentence": round(stored["bytes"] / 1024 / max(stored["sentences"], 1), 1),
        },
        "train": {
            "steps_timed": args.steps - 1,
            "batch_size": cfg.train.batch_size,
            "s_per_step_off": round(s_off, 3),
            "s_per_step_cold": round(s_cold, 3),
            "s_per_step_cached": round(s_warm, 3),
            "speedup_cached": round(s_off / s_warm, 2),
            "adapter_max_abs_diff": adapter_diff,
        },
    }
    write_json_atomic(Path(args.out), out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
