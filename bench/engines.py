"""CPU inference engines side by side, every ratio from one run: PyTorch fp32, PyTorch bf16, ORT fp32, ORT int8.

For each engine: sentences/s at the given batch size and thread count (best of `--repeats` after a warm-up),
min/mean cosine to fp32 on every sentence, batch/padding invariance (max |diff| between a sentence alone and
in batches padded left/right with several pad ids, `bellm.export.invariance`), STS-B test Spearman; plus, in
the same run, the raw fp32 GEMM rate of ONNX Runtime's MLAS (a single 1024^3 MatMul session, and the seven
projections of one decoder layer at the rows of an average batch: the model's own GEMM shapes) and of torch,
and ORT fp32's model FLOP rate as a fraction of each MLAS rate (2 x non-embedding params x real tokens / s).

    .venv/bin/python bench/engines.py                               # embedded model, zero-shot, 512 sentences
    .venv/bin/python bench/engines.py --adapter artifacts/runs/<id>/adapter --export artifacts/runs/<id>/onnx
    .venv/bin/python bench/engines.py --sentences 48 --sts-max-pairs 50 --repeats 1   # a quick correctness run

Speed numbers are only meaningful on a quiet machine (the load average is recorded before and after).
PyTorch bf16 is measured on every CPU, but labelled `emulated` where the CPU has no native bf16 (slow there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_seconds, gemm_gflops, sts_sentences, timed_encode  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def mlas_gemm_gflops(threads: int, shapes: list[tuple[int, int, int]] | None = None, repeats: int = 10) -> float:
    """fp32 GEMM rate of ORT's MLAS over MatMuls (m,k)x(k,n) with constant B, run one after another in one
    session, best of `repeats`; default one (1024,1024)x(1024,1024)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    shapes = shapes or [(1024, 1024, 1024)]
    rng = np.random.default_rng(0)
    nodes, inputs, outputs, weights, feeds = [], [], [], [], {}
    for j, (m, k, n) in enumerate(shapes):
        weights.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), f"B{j}"))
        nodes.append(helper.make_node("MatMul", [f"A{j}", f"B{j}"], [f"C{j}"]))
        inputs.append(helper.make_tensor_value_info(f"A{j}", TensorProto.FLOAT, [m, k]))
        outputs.append(helper.make_tensor_value_info(f"C{j}", TensorProto.FLOAT, [m, n]))
        feeds[f"A{j}"] = rng.standard_normal((m, k)).astype(np.float32)
    model = helper.make_model(helper.make_graph(nodes, "gemm", inputs, outputs, weights),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    flops = sum(2 * m * k * n for m, k, n in shapes)
    return flops / best_seconds(lambda: sess.run(None, feeds), repeats) / 1e9


def ort_op_shares(model: Path, texts: list[str], enc: Any, threads: int, batch: int) -> dict[str, float]:
    """Share of onnxruntime kernel time per op type for one `encode` pass (ORT's own profiler): says how
    much of the model's time is GEMM at all, which bounds the fraction of the MLAS rate it can reach."""
    import collections

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        own = enc.session  # run the contract-checked encoder's tokenisation and batching on this session
        enc.session = sess
        try:
            enc.encode(texts, batch_size=batch)
        finally:
            enc.session = own
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    return {op: round(t / total, 4) for op, t in per_op.most_common()}


def layer_gemm_shapes(config: Any, rows: int) -> list[tuple[int, int, int]]:
    """The seven projections of one decoder layer as (rows, k, n) GEMMs: q, k, v, o, gate, up, down."""
    h, i = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    return [(rows, h, q), (rows, h, kv), (rows, h, kv), (rows, q, h), (rows, h, i), (rows, h, i), (rows, i, h)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--adapter", default=None, help="a trained LoRA adapter (merged)")
    ap.add_argument("--export", type=Path, default=None, help="an existing export root (fp32/, int8/); else exported "
                    "here (fp32 + int8, gates on, STS gate off)")
    ap.add_argument("-k", type=int, default=None, help="bidirectional layers (default: the adapter's, else 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sentences", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--sts-max-pairs", type=int, default=None, help="STS-B test pairs for Spearman (default: all)")
    ap.add_argument("--bf16-sentences", type=int, default=None,
                    help="sentences for PyTorch bf16 (default: all where bf16 is native, else 32: emulated bf16 "
                    "runs at ~1 GFLOP/s, so its speed is sampled and its quality not measured)")
    ap.add_argument("--out", type=Path, default=RESULTS / "engines.json")
    args = ap.parse_args()

    import torch

    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder, torch_runner
    from bellm.export.invariance import check_invariance
    from bellm.export.parity import PARITY_SENTENCES, suite_scorer
    from bellm.hardware import cpu_supports_bf16
    from bellm.precision import cast_parameters
    from bellm.runtime import OnnxEncoder

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    gemm = {"mlas_fp32": mlas_gemm_gflops(args.threads), "torch_fp32": gemm_gflops(1024, 10),
            "torch_bf16": gemm_gflops(1024, 10, "bfloat16")}
    texts = sts_sentences(args.sentences)
    native_bf16 = cpu_supports_bf16()
    settings = {} if args.k is None and args.adapter else {"bidirectional_layers": 2 if args.k is None else args.k}
    fp32 = load_encoder(args.model, adapter=args.adapter, **settings)  # the adapter's bellm.json is authoritative
    args.k = fp32.k
    tokens = sum(len(e.ids) for e in fp32.tokenize(texts))
    inner = fp32.module.backbone.decoder
    params = sum(p.numel() for p in inner.parameters()) - inner.embed_tokens.weight.numel()
    # MLAS on the model's own GEMMs: one layer's projections with the rows of an average batch (sorted
    # batches carry little padding, so rows ~ batch x mean tokens per sentence).
    rows_per_batch = round(args.batch * tokens / len(texts))
    gemm["mlas_fp32_model_shapes"] = mlas_gemm_gflops(args.threads, layer_gemm_shapes(inner.config, rows_per_batch))

    with tempfile.TemporaryDirectory() as tmp:
        root = args.export
        if root is None:
            root = Path(tmp) / "export"
            export_encoder(fp32, root, ["fp32", "int8"], sts_gate=False)
        engines: dict[str, Any] = {"pytorch_fp32": fp32}
        bf16 = load_encoder(args.model, adapter=args.adapter, **settings)
        cast_parameters(bf16.module, torch.bfloat16)
        engines["pytorch_bf16"] = bf16
        for name in ("fp32", "int8"):
            if (root / name / "model.onnx").is_file():
                engines[f"ort_{name}"] = OnnxEncoder(root / name, ["CPUExecutionProvider"], threads=args.threads)

        ref = engines["ort_fp32"].encode(texts)
        encs = fp32.tokenize(list(PARITY_SENTENCES[:17]))
        scorer = suite_scorer(["stsb"], args.sts_max_pairs, batch_size=args.batch)
        rows: dict[str, dict[str, Any]] = {}
        n_bf16 = args.bf16_sentences or (len(texts) if native_bf16 else min(32, len(texts)))
        for name, enc in engines.items():
            sampled = name == "pytorch_bf16" and n_bf16 < len(texts)
            sub = texts[:n_bf16] if sampled else texts
            sec = timed_encode(enc.encode, sub, args.batch, 1 if sampled else args.repeats)
            rows[name] = {"sent_per_s": len(sub) / sec, "tok_per_s": tokens * len(sub) / len(texts) / sec,
                          "seconds": sec, "sentences_timed": len(sub)}
            if sampled:  # too slow to score: speed only, on a sample (tokens/s is approximate)
                rows[name].update(min_cos_to_fp32=None, mean_cos_to_fp32=None, invariance_max_abs_diff=None,
                                  stsb_test_spearman=None)
                continue
            emb = enc.encode(texts, batch_size=args.batch)
            cos = (emb * ref).sum(1)
            run = enc.run_batch if hasattr(enc, "run_batch") else torch_runner(enc)
            inv = check_invariance(run, encs, float("inf"), name)  # measure only: the bound is the export's job
            rows[name].update(min_cos_to_fp32=float(cos.min()), mean_cos_to_fp32=float(cos.mean()),
                              invariance_max_abs_diff=inv.max_abs_diff, stsb_test_spearman=scorer(enc))
        op_shares = ort_op_shares(root / "fp32" / "model.onnx", texts[:128], engines["ort_fp32"], args.threads,
                                  args.batch)
    base = rows["pytorch_fp32"]
    for r in rows.values():
        r["x_pytorch_fp32"] = r["sent_per_s"] / base["sent_per_s"]
        r["x_pytorch_bf16"] = r["sent_per_s"] / rows["pytorch_bf16"]["sent_per_s"]
        r["spearman_delta"] = (None if r["stsb_test_spearman"] is None
                               else r["stsb_test_spearman"] - rows["ort_fp32"]["stsb_test_spearman"])
    ort_fp32_gflops = 2 * params * rows["ort_fp32"]["tok_per_s"] / 1e9
    out = {
        "model": args.model, "adapter": args.adapter, "k": args.k, "threads": args.threads, "batch": args.batch,
        "sentences": len(texts), "tokens": tokens, "non_embedding_params": params, "gemm_gflops": gemm,
        "ort_fp32_model_gflops": ort_fp32_gflops, "ort_fp32_fraction_of_mlas": ort_fp32_gflops / gemm["mlas_fp32"],
        "ort_fp32_fraction_of_mlas_model_shapes": ort_fp32_gflops / gemm["mlas_fp32_model_shapes"],
        "rows_per_batch": rows_per_batch, "ort_fp32_op_time_shares": op_shares,
        "native_bf16": native_bf16, "engines": rows, "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(), "cpu": platform.processor() or platform.machine(),
        "command": " ".join(sys.argv),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    bf16_note = "" if out["native_bf16"] else " (emulated: this CPU has no native bf16)"
    lines = [
        f"# CPU engines ({args.model}, k={args.k}, {args.threads} threads, batch {args.batch}, {len(texts)} sentences, "
        f"{tokens} tokens)", "",
        f"GEMM fp32: MLAS {gemm['mlas_fp32']:.1f}, torch {gemm['torch_fp32']:.1f}; torch bf16 {gemm['torch_bf16']:.1f} "
        f"GFLOP/s{bf16_note}. ORT fp32 runs the model at {ort_fp32_gflops:.1f} GFLOP/s = "
        f"{out['ort_fp32_fraction_of_mlas']:.2f} of MLAS (1024^3); MLAS on the model's own GEMMs (one layer's "
        f"projections, {rows_per_batch} rows) {gemm['mlas_fp32_model_shapes']:.1f} GFLOP/s, of which ORT fp32 reaches "
        f"{out['ort_fp32_fraction_of_mlas_model_shapes']:.2f}; MatMul is {op_shares.get('MatMul', 0):.0%} of ORT's "
        f"kernel time (its profiler). Load avg before/after: {load_before[0]:.2f}/"
        f"{out['load_avg_after'][0]:.2f}", "",
        "| engine | sent/s | x PyTorch fp32 | x PyTorch bf16 | min cos to fp32 | invariance max diff | STS-B test "
        "| delta |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    def fmt(v: float | None, spec: str) -> str:
        return "n/m" if v is None else format(v, spec)

    lines += [f"| {n} | {r['sent_per_s']:.1f} | {r['x_pytorch_fp32']:.2f} | {r['x_pytorch_bf16']:.2f} | "
              f"{fmt(r['min_cos_to_fp32'], '.5f')} | {fmt(r['invariance_max_abs_diff'], '.1e')} | "
              f"{fmt(r['stsb_test_spearman'], '.2f')} | {fmt(r['spearman_delta'], '+.2f')} |" for n, r in rows.items()]
    if n_bf16 < len(texts):
        lines += ["", f"n/m: not measured. PyTorch bf16 was timed on the first {n_bf16} sentences only{bf16_note}."]
    lines += ["", f"`{out['command']}`"]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
