"""Which batch-invariant int8 form is fastest on *this* CPU: MatMulNBits 8-bit (and 4-bit) by block size and
accuracy level, against ORT fp32 and the (batch-dependent, unpublishable) dynamic int8, on one export.

Speed on a sample of STS-B test sentences (best of `--repeats`, interleaved), fidelity (min cosine to fp32 on
the same sentences) and the invariance gate's max |diff| for each form; the published variant is chosen
from this table. Speed numbers only on a quiet machine.

    .venv/bin/python bench/int8_probe.py artifacts/runs/<id>/onnx [--sentences 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sts_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path, help="an export root with fp32/")
    ap.add_argument("--sentences", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--forms", default="nbits8-b32-a4,nbits8-b128-a4,nbits8-b32-a0,nbits4-b32-a4,dynamic")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "int8_probe.json")
    args = ap.parse_args()

    from bellm.export.invariance import check_invariance
    from bellm.export.parity import PARITY_SENTENCES
    from bellm.export.variants import quantize_dynamic_int8, quantize_nbits
    from bellm.runtime import OnnxEncoder
    from bellm.tokenize import encode_one

    fp32_dir = args.export / "fp32"
    texts = sts_sentences(args.sentences)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"fp32": fp32_dir}
        info: dict[str, dict] = {"fp32": {}}
        for form in [f for f in args.forms.split(",") if f]:
            d = Path(tmp) / form
            d.mkdir()
            for name in ("tokenizer.json", "bellm.json"):
                shutil.copy(fp32_dir / name, d / name)
            if form == "dynamic":
                info[form] = quantize_dynamic_int8(fp32_dir / "model.onnx", d / "model.onnx")
            else:  # nbits<bits>-b<block>-a<accuracy level>
                kind, block, acc = form.split("-")
                info[form] = quantize_nbits(fp32_dir / "model.onnx", d / "model.onnx", int(kind.removeprefix("nbits")),
                                            int(block[1:]), int(acc[1:]))
            dirs[form] = d
        encs = {n: OnnxEncoder(d, ["CPUExecutionProvider"], threads=args.threads, verify_model=False)
                for n, d in dirs.items()}
        for e in encs.values():
            e.encode(texts[:8], batch_size=args.batch)  # warm-up
        best = {n: float("inf") for n in encs}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits every form alike
            for n, e in encs.items():
                t = time.perf_counter()
                e.encode(texts, batch_size=args.batch)
                best[n] = min(best[n], time.perf_counter() - t)
        ref = encs["fp32"].encode(texts, batch_size=args.batch)
        probe = [encode_one(encs["fp32"].tokenizer, encs["fp32"].template, s, encs["fp32"].max_length)
                 for s in PARITY_SENTENCES[:17]]
        rows = {}
        for n, e in encs.items():
            emb = e.encode(texts, batch_size=args.batch)
            cos = (emb * ref).sum(1)
            inv = check_invariance(e.run_batch, probe, float("inf"), n)
            rows[n] = {"sent_per_s": len(texts) / best[n], "x_fp32": best["fp32"] / best[n],
                       "min_cos_to_fp32": float(cos.min()), "mean_cos_to_fp32": float(cos.mean()),
                       "invariance_max_abs_diff": inv.max_abs_diff, "bytes": (dirs[n] / "model.onnx").stat().st_size,
                       **{k: v for k, v in info[n].items() if k in ("bits", "block_size", "accuracy_level")}}
    out = {"export": str(args.export), "sentences": len(texts), "threads": args.threads, "batch": args.batch,
           "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "forms": rows,
           "command": " ".join(sys.argv)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# int8 forms on this CPU ({len(texts)} sentences, batch {args.batch}, {args.threads} threads; load "
             f"{load_before[0]:.2f}/{out['load_avg_after'][0]:.2f})", "",
             "| form | sent/s | x ORT fp32 | min cos to fp32 | mean cos | invariance max diff | MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {n} | {r['sent_per_s']:.1f} | {r['x_fp32']:.2f} | {r['min_cos_to_fp32']:.5f} | "
              f"{r['mean_cos_to_fp32']:.5f} | {r['invariance_max_abs_diff']:.1e} | {r['bytes'] / 1e6:.0f} |"
              for n, r in rows.items()]
    lines += ["", f"`{out['command']}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
