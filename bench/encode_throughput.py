"""Encode throughput of the real embedded model on 2 threads (fp32), as sentences/s, tokens/s and as a
fraction of the machine's fp32 GEMM rate (2 × non-embedding params × tokens / time ÷ GEMM FLOP/s).

    .venv/bin/python bench/encode_throughput.py [--n 512] [--batch-sizes 32 64] [-k 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import gemm_gflops, machine, sts_sentences  # noqa: E402

from bellm.config import EncoderConfig  # noqa: E402
from bellm.models import DEFAULT_MODEL  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("-k", "--bidirectional-layers", default=str(EncoderConfig().bidirectional_layers))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "encode_throughput.json"))
    args = ap.parse_args()

    import torch

    import bellm
    from bellm.io import write_json_atomic

    torch.set_num_threads(args.threads)
    gemm = gemm_gflops()
    enc = bellm.load_encoder(DEFAULT_MODEL, bidirectional_layers=int(args.bidirectional_layers))
    texts = sts_sentences(args.n)
    tokens = sum(len(e.ids) for e in enc.tokenize(texts))
    dec = enc.module.backbone.decoder
    non_emb = sum(p.numel() for n, p in dec.named_parameters() if "embed_tokens" not in n)
    enc.encode(texts[:32], batch_size=32)  # warm-up
    rows = []
    for bs in args.batch_sizes:
        t = time.perf_counter()
        enc.encode(texts, batch_size=bs, show_progress=False)
        dt = time.perf_counter() - t
        gflops = 2 * non_emb * tokens / dt / 1e9
        rows.append({"batch_size": bs, "seconds": round(dt, 2), "sentences_per_s": round(len(texts) / dt, 1),
                     "tokens_per_s": round(tokens / dt, 1), "model_gflops": round(gflops, 1),
                     "fraction_of_gemm": round(gflops / gemm, 3)})
        print(json.dumps(rows[-1]))
    result = {"n_sentences": len(texts), "tokens": tokens, "non_embedding_params": non_emb,
              "gemm_gflops": round(gemm, 1), "k": args.bidirectional_layers, "machine": machine(), "rows": rows}
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
