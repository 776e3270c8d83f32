"""Which batch-invariant int8 form is fastest on *this* CPU, against ORT fp32 and PyTorch bf16, in one process.

Forms: `rowq` (the published int8: smoothed per-row int8 through `MatMulIntegerToFloat`, `bellm.export.rowquant`;
`rowq-a0` is the same without smoothing), `nbits<bits>-b<block>-a<accuracy level>` (`MatMulNBits`; nbits8-b32-a4
was the published int8 until 2026-12) and `dynamic` (per-tensor dynamic int8: batch dependent, never published).
Engines besides them: ORT fp32 (the reference) and PyTorch bf16 / fp32 (`--torch bf16,fp32`).

Speed on STS-B *dev* sentences (best of `--repeats`, every engine interleaved in each repeat so drift in machine
load hits all alike), fidelity (min/mean cosine to ORT fp32 on the same sentences), the invariance gate's max
|diff| (a sentence alone vs in batches padded left/right with several pad ids), optionally STS-B dev Spearman
(`--sts-pairs`). The CPU's flags and the load average are recorded. Writes `bench/results/int8_probe.{json,md}`.

    .venv/bin/python bench/int8_probe.py                       # embedded model, zero-shot (exported here, ~2 min)
    .venv/bin/python bench/int8_probe.py --export artifacts/runs/<id>/onnx --adapter artifacts/runs/<id>/adapter
    .venv/bin/python bench/int8_probe.py --sentences 64 --repeats 1 --forms rowq --torch ""   # a quick check

Speed numbers only on a quiet machine (and say so when it was not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import key_cpu_flags, sts_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def build_form(form: str, fp32_dir: Path, d: Path, tokenize: Any) -> dict[str, Any]:
    """Quantise fp32_dir/model.onnx into d/ in `form`; returns what the quantiser reports."""
    from bellm.export.rowquant import calibration_encodings, quantize_rows_int8
    from bellm.export.variants import quantize_dynamic_int8, quantize_nbits

    d.mkdir()
    for name in ("tokenizer.json", "bellm.json"):
        shutil.copy(fp32_dir / name, d / name)
    src, dst = fp32_dir / "model.onnx", d / "model.onnx"
    if form == "dynamic":
        return quantize_dynamic_int8(src, dst)
    if form in ("rowq", "rowq-a0"):
        return quantize_rows_int8(src, dst, calibration_encodings(tokenize), smooth=form == "rowq")
    kind, block, acc = form.split("-")  # nbits<bits>-b<block>-a<accuracy level>
    return quantize_nbits(src, dst, int(kind.removeprefix("nbits")), int(block[1:]), int(acc[1:]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, default=None, help="an export root with fp32/ (default: export here)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapter", default=None, help="the adapter of --export (for PyTorch and for exporting)")
    ap.add_argument("-k", type=int, default=None, help="bidirectional layers when zero-shot (default 2)")
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--forms", default="rowq,rowq-a0,nbits8-b32-a4,dynamic")
    ap.add_argument("--torch", default="bf16", help="PyTorch dtypes to time beside ORT (comma list, '' for none)")
    ap.add_argument("--sts-pairs", type=int, default=0, help="STS-B dev pairs to score per engine (0: none, -1: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_probe.json")
    args = ap.parse_args()

    import numpy as np
    import torch

    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder
    from bellm.export.invariance import check_invariance
    from bellm.export.parity import PARITY_SENTENCES, suite_scorer
    from bellm.precision import cast_parameters
    from bellm.runtime import OnnxEncoder
    from bellm.tokenize import encode_one

    torch.set_num_threads(args.threads)
    texts = sts_sentences(args.sentences, split="dev")
    load_before = os.getloadavg()
    settings = {} if args.adapter and args.k is None else {"bidirectional_layers": args.k or 2}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.export
        if root is None:
            root = Path(tmp) / "export"
            export_encoder(load_encoder(args.model, adapter=args.adapter, **settings), root, ["fp32"],
                           sts_gate=False)
        fp32_dir = root / "fp32"
        ref_enc = OnnxEncoder(fp32_dir, ["CPUExecutionProvider"], threads=args.threads, verify_model=False)

        def tokenize(ts: list[str]) -> list:
            return [encode_one(ref_enc.tokenizer, ref_enc.template, t, ref_enc.max_length) for t in ts]

        engines: dict[str, Any] = {"ort_fp32": ref_enc}
        info: dict[str, dict] = {"ort_fp32": {}}
        for form in [f for f in args.forms.split(",") if f]:
            t0 = time.perf_counter()
            info[form] = build_form(form, fp32_dir, Path(tmp) / form, tokenize)
            info[form]["build_seconds"] = round(time.perf_counter() - t0, 1)
            engines[form] = OnnxEncoder(Path(tmp) / form, ["CPUExecutionProvider"], threads=args.threads,
                                        verify_model=False)
        for dt in [d for d in args.torch.split(",") if d]:
            enc = load_encoder(args.model, adapter=args.adapter, **settings)
            if dt == "bf16":
                cast_parameters(enc.module, torch.bfloat16)
            engines[f"pytorch_{dt}"], info[f"pytorch_{dt}"] = enc, {}
        for e in engines.values():
            e.encode(texts[: args.batch], batch_size=args.batch)  # warm-up (allocations, oneDNN primitives)
        best = {n: float("inf") for n in engines}
        for _ in range(args.repeats):  # interleaved
            for n, e in engines.items():
                t = time.perf_counter()
                e.encode(texts, batch_size=args.batch)
                best[n] = min(best[n], time.perf_counter() - t)
        ref = ref_enc.encode(texts, batch_size=args.batch)
        probe = tokenize(list(PARITY_SENTENCES[:17]))
        scorer = suite_scorer(["stsb_dev"], None if args.sts_pairs < 0 else args.sts_pairs, args.batch) \
            if args.sts_pairs else None
        rows = {}
        for n, e in engines.items():
            emb = e.encode(texts, batch_size=args.batch)
            cos = (emb * ref).sum(1)
            run = e.run_batch
            inv = check_invariance(run, probe, float("inf"), n)
            path = Path(tmp) / n / "model.onnx" if n in args.forms.split(",") else fp32_dir / "model.onnx"
            rows[n] = {"sent_per_s": len(texts) / best[n], "seconds": best[n],
                       "min_cos_to_fp32": float(cos.min()), "mean_cos_to_fp32": float(cos.mean()),
                       "invariance_max_abs_diff": inv.max_abs_diff,
                       "mb": None if n.startswith("pytorch") else round(path.stat().st_size / 1e6, 1),
                       "stsb_dev_spearman": scorer(e) if scorer else None, **info[n]}
    base = rows["ort_fp32"]["sent_per_s"]
    bf16 = rows.get("pytorch_bf16", {}).get("sent_per_s")
    for r in rows.values():
        r["x_ort_fp32"] = r["sent_per_s"] / base
        r["x_pytorch_bf16"] = r["sent_per_s"] / bf16 if bf16 else None
        sp, sp0 = r["stsb_dev_spearman"], rows["ort_fp32"]["stsb_dev_spearman"]
        r["spearman_delta"] = None if sp is None or sp0 is None else sp - sp0
    out = {"export": str(args.export) if args.export else f"{args.model} exported here (fp32)",
           "adapter": args.adapter, "sentences": len(texts), "sentence_set": "STS-B dev (first unique)",
           "threads": args.threads, "batch": args.batch, "repeats": args.repeats,
           "cpu": platform.processor() or platform.machine(), "cpu_flags": key_cpu_flags(),
           "onnxruntime": __import__("onnxruntime").__version__, "torch": torch.__version__,
           "numpy": np.__version__, "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
           "engines": rows, "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    def fmt(v: float | None, spec: str) -> str:
        return "n/m" if v is None else format(v, spec)

    lines = [f"# int8 forms on this CPU ({len(texts)} STS-B dev sentences, batch {args.batch}, {args.threads} threads; "
             f"flags {' '.join(out['cpu_flags'])}; load {load_before[0]:.2f}/{out['load_avg_after'][0]:.2f})", "",
             "| engine | sent/s | x ORT fp32 | x PyTorch bf16 | min cos to fp32 | mean cos | invariance max diff | "
             "STS-B dev | delta | MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['sent_per_s']:.1f} | {r['x_ort_fp32']:.2f} | {fmt(r['x_pytorch_bf16'], '.2f')} | "
              f"{r['min_cos_to_fp32']:.5f} | {r['mean_cos_to_fp32']:.5f} | {r['invariance_max_abs_diff']:.1e} | "
              f"{fmt(r['stsb_dev_spearman'], '.2f')} | {fmt(r['spearman_delta'], '+.2f')} | {fmt(r['mb'], '.0f')} |"
              for n, r in rows.items()]
    lines += ["", f"`{out['command']}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
