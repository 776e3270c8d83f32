"""PyTorch eager vs ONNX Runtime fp32 vs int8 on CPU (2 threads), same ~512 STS-B sentences.

Reports sentences/s and tokens/s at batch 32 and 64, the ratio to PyTorch, the fraction of the machine's
measured fp32 GEMM rate (FLOPs ~ 2 x non-embedding params x real tokens), export time, file sizes and
fidelity (cosine to fp32, STS-B test Spearman through the export's gate). Results: bench/results/.

    .venv/bin/python bench/onnx_speed.py [--model smollm2-135m] [--threads 2] [--sentences 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from common import timed_encode  # bench/ is on sys.path when run as a script

from bellm.config import EncoderConfig
from bellm.models import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def sts_sentences(n: int) -> list[str]:
    """The first n unique sentences of STS-B test."""
    from bellm.sts import load_task

    return load_task("stsb").subsets[0][1].unique_sentences(n)


def gemm_gflops(threads: int, size: int = 1024, reps: int = 20) -> float:
    """Measured fp32 GEMM rate of this machine with `threads` threads (torch's BLAS), GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size**3 * reps / (time.perf_counter() - t) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("-k", type=int, default=EncoderConfig().bidirectional_layers)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--sts-max-pairs", type=int, default=None, help="STS-B test pairs for Spearman (default all)")
    ap.add_argument("--out", type=Path, default=RESULTS / "onnx_speed.json")
    args = ap.parse_args()

    import torch

    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder
    from bellm.export.parity import suite_scorer
    from bellm.runtime import OnnxEncoder

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    gflops = gemm_gflops(args.threads)
    texts = sts_sentences(args.sentences)
    enc = load_encoder(args.model, bidirectional_layers=args.k)
    tokens = sum(len(e.ids) for e in enc.tokenize(texts))
    inner = enc.module.backbone.decoder
    params = sum(p.numel() for p in inner.parameters()) - inner.embed_tokens.weight.numel()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # No STS gate here: the bench measures every variant, and scores Spearman itself below.
        result = export_encoder(enc, Path(tmp) / "export", ["fp32", "int8"], sts_gate=False)
        export_s = time.perf_counter() - t0
        engines = {"pytorch": enc}
        for name in result.published():
            engines[f"ort_{name}"] = OnnxEncoder(Path(tmp) / "export" / name, ["CPUExecutionProvider"],
                                                 threads=args.threads)
        sizes = {n: v.bytes for n, v in result.variants.items()}
        ref = engines["ort_fp32"].encode(texts)
        torch_emb = enc.encode(texts)
        rows = []
        for bs in (32, 64):
            base = None
            for name, e in engines.items():
                sec = timed_encode(e.encode, texts, bs)
                base = base or sec
                tps = tokens / sec
                rows.append({"engine": name, "batch": bs, "sent_per_s": len(texts) / sec, "tok_per_s": tps,
                             "ratio_to_pytorch": base / sec, "gemm_fraction": 2 * params * tps / (gflops * 1e9)})
        fidelity = {}
        for name, e in engines.items():
            emb = torch_emb if name == "pytorch" else e.encode(texts)
            cos = (emb * ref).sum(1)
            fidelity[name] = {"mean_cos_to_fp32": float(cos.mean()), "min_cos_to_fp32": float(cos.min())}
        scorer = suite_scorer(["stsb"], args.sts_max_pairs)
        base_sp = None
        for name in result.published():
            sp = scorer(engines[f"ort_{name}"])
            base_sp = sp if base_sp is None else base_sp
            fidelity[f"ort_{name}"].update({"stsb_test_spearman": sp, "spearman_delta": sp - base_sp,
                                            "passes_gate": base_sp - sp <= 0.5})
    out = {
        "model": args.model, "k": args.k, "threads": args.threads, "sentences": len(texts), "tokens": tokens,
        "non_embedding_params": params, "gemm_gflops": gflops, "export_seconds": export_s,
        "export_published": result.published(), "file_bytes": sizes, "throughput": rows, "fidelity": fidelity,
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        "cpu": platform.processor() or platform.machine(),
        "note": "shared 2-core machine; no GPU measured",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# ONNX speed ({args.model}, k={args.k}, {args.threads} threads, {len(texts)} sentences, "
             f"{tokens} tokens)", "",
             f"GEMM fp32: {gflops:.1f} GFLOP/s; export (fp32+int8, incl. gates): {export_s:.1f}s; "
             f"load avg before/after: {load_before[0]:.2f}/{out['load_avg_after'][0]:.2f}", "",
             "| engine | batch | sent/s | tok/s | x PyTorch | GEMM fraction |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['engine']} | {r['batch']} | {r['sent_per_s']:.1f} | {r['tok_per_s']:.0f} | "
              f"{r['ratio_to_pytorch']:.2f} | {r['gemm_fraction']:.2f} |" for r in rows]
    lines += ["", "| engine | mean cos to fp32 | min cos | STS-B Spearman | delta |", "|---|---|---|---|---|"]
    for name, f in fidelity.items():
        sp, delta = f.get("stsb_test_spearman"), f.get("spearman_delta")
        sp_s = "" if sp is None else f"{sp:.2f}"
        delta_s = "" if delta is None else f"{delta:+.2f}"
        lines.append(f"| {name} | {f['mean_cos_to_fp32']:.5f} | {f['min_cos_to_fp32']:.5f} | {sp_s} | {delta_s} |")
    lines += ["", "File sizes: " + ", ".join(f"{n} {b / 1e6:.1f} MB" for n, b in sizes.items())]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
