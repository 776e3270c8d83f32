"""One-shot GPU benchmark (<= 8 minutes): ORT CUDA fp16 (`onnx` Attention and `ms_mha`) vs PyTorch bf16 SDPA, eager
and as replayed CUDA graphs (`bellm.cuda_graphs`, what `Encoder.encode` runs on a GPU).

At batch 1 / 32 / 128 / 512 on the same STS-B sentences: sentences/s (whole set, length-sorted batches), p50 latency of
one batch, and agreement with fp32 (min / mean cosine to PyTorch fp32 on the same device, TF32 off). The fp16
exports are built here first (`bellm.export`, gates on, STS gate off), so the machine needs torch, transformers,
onnx, onnxscript, tokenizers and `onnxruntime-gpu` (see BENCHMARKS.md for carrying the wheel).

    python bench/gpu.py --out $OUT/gpu.json                         # on the GPU machine
    python bench/gpu.py --device cpu --model DIR --sentences 24 --batches 1,8 --out /tmp/gpu.json   # CPU dry run

A part that cannot run (no CUDA provider, an export that fails its gates) is recorded with the reason and the
rest still runs; the budget check skips what would not fit in `--budget-s`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sts_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def torch_run(enc: Any, device: str):
    """(ids, mask, span) numpy → (B,H) fp32 numpy through the PyTorch module, synchronised."""
    import torch

    @torch.inference_mode()
    def run(ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        out = enc.module(*(torch.from_numpy(x).to(device) for x in (ids, mask, span)))
        out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
        sync(device)
        return out

    return run


def measure(run: Any, encs: list, batch: int, repeats: int) -> dict[str, float]:
    """sentences/s over all encodings (length-sorted batches) and p50 seconds per batch."""
    from bellm.tokenize import batches_by_length, pad_batch

    batches = [pad_batch([encs[i] for i in idx]) for idx in batches_by_length(encs, batch)]
    run(*batches[0])  # warm-up: kernels, allocator, cuDNN/cuBLAS plans
    per: list[float] = []
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for b in batches:
            t = time.perf_counter()
            run(*b)
            per.append(time.perf_counter() - t)
        best = min(best, time.perf_counter() - t0)
    return {"sent_per_s": len(encs) / best, "p50_ms": 1e3 * statistics.median(per), "batches": len(batches)}


def agreement(run: Any, ref: np.ndarray, encs: list) -> dict[str, float]:
    from bellm.tokenize import batches_by_length, pad_batch

    out = np.zeros_like(ref)
    for idx in batches_by_length(encs, 32):
        out[idx] = run(*pad_batch([encs[i] for i in idx]))
    cos = (out * ref).sum(1)
    return {"min_cos_to_fp32": float(cos.min()), "mean_cos_to_fp32": float(cos.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="1,32,128,512")
    ap.add_argument("--sentences", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--work", type=Path, default=None,
                    help="where the exports go (default: a temp dir); exports already there are reused")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ROOT / "bench" / "results")) / "gpu.json")
    args = ap.parse_args()
    start = time.perf_counter()

    import onnxruntime as ort
    import torch

    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder
    from bellm.runtime import OnnxEncoder
    from bellm.tokenize import batches_by_length, pad_batch

    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference is real fp32
    torch.backends.cudnn.allow_tf32 = False
    cuda_ep = "CUDAExecutionProvider" if args.device.startswith("cuda") else "CPUExecutionProvider"
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
        "torch": torch.__version__, "onnxruntime": ort.__version__, "ort_providers": ort.get_available_providers(),
        "model": args.model, "k": args.k, "batches": {}, "skipped": {}, "command": " ".join(sys.argv),
    }
    batches = [int(b) for b in args.batches.split(",")]
    texts = sts_sentences(args.sentences)
    fp32 = load_encoder(args.model, bidirectional_layers=args.k, adapter=args.adapter)
    encs = fp32.tokenize(texts)

    work = args.work or Path(tempfile.mkdtemp(prefix="bellm-gpu-"))
    engines: dict[str, Any] = {}
    for op in ("onnx", "ms_mha"):
        try:
            if not (work / op / "fp16" / "model.onnx").is_file():  # reuse a --work directory's exports
                t = time.perf_counter()
                exp = export_encoder(fp32, work / op, ["fp32", "fp16"], attention_op=op, sts_gate=False)
                result[f"export_{op}_s"] = time.perf_counter() - t
                if "fp16" not in exp.published():
                    result["skipped"][f"ort_fp16_{op}"] = exp.variants["fp16"].reason
                    continue
            if cuda_ep not in ort.get_available_providers():
                result["skipped"][f"ort_fp16_{op}"] = f"{cuda_ep} not in this onnxruntime (install onnxruntime-gpu)"
                continue
            engines[f"ort_fp16_{op}"] = OnnxEncoder(work / op / "fp16", providers=[cuda_ep]).run_batch
        except Exception as e:  # noqa: BLE001 - record and go on: the other engines still measure
            result["skipped"][f"ort_fp16_{op}"] = f"{type(e).__name__}: {e}"[:500]
            traceback.print_exc()

    fp32.module.to(args.device)
    ref_run = torch_run(fp32, args.device)
    ref = np.zeros((len(encs), fp32.dim), dtype=np.float32)
    for idx in batches_by_length(encs, 32):
        ref[idx] = ref_run(*pad_batch([encs[i] for i in idx]))
    bf16 = load_encoder(args.model, bidirectional_layers=args.k, adapter=args.adapter, dtype="bfloat16",
                        device=args.device)
    engines = {"pytorch_bf16_sdpa": torch_run(bf16, args.device), **engines}
    if args.device.startswith("cuda"):  # the product's PyTorch path on a GPU: CUDA-graph replay (bellm.cuda_graphs)
        engines = {"pytorch_bf16_graphs": bf16.runner(), **engines}
    result["engines"] = {name: agreement(run, ref, encs) for name, run in engines.items()}

    for b in batches:
        for name, run in engines.items():
            if time.perf_counter() - start > args.budget_s:
                result["skipped"][f"{name}@{b}"] = "over the time budget"
                continue
            result["batches"].setdefault(str(b), {})[name] = measure(run, encs, b, args.repeats)
        row = result["batches"].get(str(b), {})
        if "pytorch_bf16_sdpa" in row:
            for r in row.values():
                r["x_pytorch_bf16"] = r["sent_per_s"] / row["pytorch_bf16_sdpa"]["sent_per_s"]
    result["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
