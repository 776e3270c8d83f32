"""`export_encoder`: an `Encoder` (zero-shot or with a merged adapter) → a published ONNX export directory.

Layout (each variant directory is self-contained: a consumer needs only onnxruntime and tokenizers)::

    OUTPUT/export.json             what was built, gate results, rejected variants and why
    OUTPUT/README.md               index of the variants
    OUTPUT/<variant>/model.onnx    (+ model.onnx.data beyond 2 GB)
    OUTPUT/<variant>/tokenizer.json, bellm.json, README.md (Hub model card)
    OUTPUT/<variant>/modules.json, config_sentence_transformers.json, bellm_st.py, bellm_tokenize.py
                                   (sentence-transformers: `SentenceTransformer(dir, trust_remote_code=True)`)

Everything is built in a temporary directory next to OUTPUT and renamed over it only when the fp32 graph
check, parity gate and batch-invariance gate pass (`bellm.io.atomic_path`): a failure publishes nothing. A
variant that fails its own gate (fidelity, batch/padding invariance, graph check, STS Spearman on dev) is left out
and recorded in export.json.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx_ir as ir
import onnxruntime as ort
import torch

from bellm import __version__
from bellm.config import EvalConfig, ExportConfig
from bellm.contract import ATTENTION_OPS, MIN_OPSET, VARIANTS, export_descriptor, write_descriptor
from bellm.encoder import Encoder
from bellm.errors import InputError
from bellm.export.card import model_card
from bellm.export.check import check_graph
from bellm.export.invariance import FP32_MAX_DIFF, QUANTIZED_MAX_DIFF, InvarianceError, check_invariance
from bellm.export.parity import (
    PARITY_SENTENCES,
    ParityError,
    ScoreFn,
    run_parity,
    spearman_gate,
    suite_scorer,
)
from bellm.export.rewrite import drop_gqa_expand, pack_heads, set_causality, to_ms_mha
from bellm.export.rowquant import calibration_encodings
from bellm.export.st_package import write_sentence_transformers
from bellm.export.trace import PAD_VISIBILITY, quiet_exporter, trace
from bellm.export.variants import EXTERNAL_DATA_BYTES, quantize_int8
from bellm.io import atomic_path, sha256_file, write_json_atomic
from bellm.runtime import OnnxEncoder, read_contract
from bellm.sts import suite_name
from bellm.tokenize import pad_batch

log = logging.getLogger(__name__)
_DEFAULTS = ExportConfig()  # defaults are written once, in bellm.config
DECISION_SUITE = EvalConfig().gate_suite  # the variant gate's data: the decision set (dev splits), one home

FP32_MIN_COSINE, FP32_MAX_ABS = 0.99999, 1e-4
FP16_MIN_COSINE = 0.999
INT8_MIN_COSINE = 0.995  # every parity sentence, every batch layout; the STS gate bounds the ranking loss
INVARIANCE_SENTENCES = 17  # the first 17 parity sentences: 4 to 40 tokens, so every batch pads


@dataclass
class VariantResult:
    name: str
    published: bool = False
    reason: str = ""
    seconds: float = 0.0
    bytes: int = 0
    graph_check: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    invariance: dict[str, Any] = field(default_factory=dict)
    sts: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    output: Path
    variants: dict[str, VariantResult]
    seconds: float

    def published(self) -> list[str]:
        return [n for n, v in self.variants.items() if v.published]


def normalize_variants(variants: Sequence[str]) -> list[str]:
    """Validated variants in build order; fp32 is always built: it is the reference of every gate."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise InputError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
    return [v for v in VARIANTS if v == "fp32" or v in variants]


class ExportDestinationError(InputError):
    """OUTPUT holds something that is not a previous bellm export: replacing it would delete it."""


def check_destination(output: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse to replace a non-empty OUTPUT that is not exactly a previous bellm export (export.json, its
    README.md and variant directories), unless `overwrite`: publishing replaces the whole directory."""
    out = Path(output)
    if overwrite or not out.exists():
        return
    if not out.is_dir():
        raise ExportDestinationError(f"{out} exists and is not a directory; choose another --output")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - {"export.json", "README.md", *VARIANTS})
    if "export.json" not in entries or foreign:
        shown = ", ".join(foreign[:5] or sorted(entries)[:5])
        raise ExportDestinationError(
            f"{out} is not empty and is not a previous bellm export (it holds {shown}); exporting would replace "
            "all of it. Choose an empty or new directory, or pass --overwrite (overwrite=True) to replace it"
        )


def build_graph(encoder: Encoder, dtype: torch.dtype, attention_op: str, opset: int) -> ir.Model:
    """Trace, then make every layer's causality explicit in its fused attention node."""
    if attention_op not in ATTENTION_OPS:
        raise InputError(f"attention_op must be one of {ATTENTION_OPS}, got {attention_op!r}")
    with quiet_exporter():
        model = trace(encoder.module, dtype, opset)
        flags = encoder.module.backbone.flags
        set_causality(model, flags, PAD_VISIBILITY)
        if attention_op == "ms_mha":
            to_ms_mha(model, flags)
        else:
            drop_gqa_expand(model)
            if dtype == torch.float32:  # the CPU variants (fp32, and int8 built from it); fp16 keeps the
                pack_heads(model)       # 4-D layout its CUDA numbers were measured with (BENCHMARKS.md)
    return model


def save_model(model: ir.Model, path: Path) -> None:
    """Save; weights go to `model.onnx.data` when the file would pass the 2 GB protobuf limit."""
    size = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if size > EXTERNAL_DATA_BYTES:
        ir.save(model, path, external_data=f"{path.name}.data")
    else:
        ir.save(model, path)


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.iterdir() if p.is_file() and p.name.startswith("model.onnx"))


def onnx_ir_version(path: Path) -> int:
    """The IR version recorded in a saved model (read from the file, so it is what a consumer gets)."""
    import onnx

    return int(onnx.load(str(path), load_external_data=False).ir_version)


def write_variant(encoder: Encoder, d: Path, variant: str, attention_op: str, opset: int,
                  precision: dict[str, Any] | None = None) -> Path:
    """tokenizer.json and bellm.json (through `bellm.contract`) beside an already written model.onnx."""
    model = d / "model.onnx"
    desc = export_descriptor(
        encoder.describe(), variant, attention_op, opset, onnx_ir_version(model), sha256_file(model),
        {"bellm": __version__, "onnxruntime": ort.__version__}, precision,
    )
    encoder.tokenizer.save(str(desc.tokenizer_path(d)))
    return write_descriptor(d, desc)


def torch_runner(encoder: Encoder):  # noqa: ANN201 - a bellm.tokenize.RunBatch
    """The PyTorch reference: the encoder's own forward on a padded batch, L2-normalised, fp32."""
    return encoder.run_batch


def _cpu(d: Path) -> OnnxEncoder:
    return OnnxEncoder(d, providers=["CPUExecutionProvider"], verify_model=False)  # just written and hashed


def _fail(res: VariantResult, d: Path, why: str) -> None:
    res.published, res.reason = False, why
    shutil.rmtree(d, ignore_errors=True)
    log.warning("variant %s not published: %s", res.name, why)


def _build_fp32(encoder: Encoder, root: Path, attention_op: str, opset: int) -> VariantResult:
    """fp32: any failure here (graph check, parity, invariance) raises and aborts the whole export."""
    t0, res, d = time.perf_counter(), VariantResult("fp32"), root / "fp32"
    d.mkdir(parents=True)
    save_model(build_graph(encoder, torch.float32, attention_op, opset), d / "model.onnx")
    write_variant(encoder, d, "fp32", attention_op, opset)
    res.graph_check = check_graph(d / "model.onnx", d / "bellm.json").to_dict()
    encs = encoder.tokenize(PARITY_SENTENCES)
    rt = _cpu(d)
    res.parity = run_parity(torch_runner(encoder), rt.run_batch, encs, FP32_MIN_COSINE, FP32_MAX_ABS,
                            "fp32 ORT vs PyTorch").to_dict()
    res.invariance = check_invariance(rt.run_batch, encs[:INVARIANCE_SENTENCES], FP32_MAX_DIFF,
                                      "fp32 ORT").to_dict()
    res.seconds, res.bytes, res.published = time.perf_counter() - t0, dir_bytes(d), True
    return res


def _build_variant(
    encoder: Encoder, root: Path, name: str, attention_op: str, opset: int, fp32: OnnxEncoder
) -> VariantResult:
    """fp16 / int8: failures are recorded and the variant is dropped, the export goes on."""
    t0, res, d = time.perf_counter(), VariantResult(name), root / name
    d.mkdir(parents=True)
    floor = INT8_MIN_COSINE if name == "int8" else FP16_MIN_COSINE
    try:
        if name == "int8":
            res.extra = quantize_int8(root / "fp32" / "model.onnx", d / "model.onnx",
                                      calibration_encodings(encoder.tokenize))
        else:
            save_model(build_graph(encoder, torch.float16, attention_op, opset), d / "model.onnx")
    except Exception as e:  # noqa: BLE001 - a variant's failure must not take the fp32 export down
        log.exception("building %s failed", name)
        _fail(res, d, f"build failed ({type(e).__name__}: {str(e)[:300]})")
        return res
    write_variant(encoder, d, name, attention_op, opset, res.extra or None)
    report = check_graph(d / "model.onnx", d / "bellm.json", strict=False)
    res.graph_check = report.to_dict()
    if not report.ok:
        _fail(res, d, "graph check: " + "; ".join(report.problems))
        return res
    encs = encoder.tokenize(PARITY_SENTENCES)
    try:
        rt = _cpu(d)
        rt.run_batch(*pad_batch(encs[:2]))
    except Exception as e:  # noqa: BLE001 - e.g. a missing ORT CPU kernel for fp16
        _fail(res, d, f"cannot run on ORT CPU, so it cannot be verified here ({type(e).__name__}: {str(e)[:200]})")
        return res
    try:
        res.parity = run_parity(fp32.run_batch, rt.run_batch, encs, floor, None,
                                f"{name} vs fp32").to_dict()
        res.invariance = check_invariance(rt.run_batch, encs[:INVARIANCE_SENTENCES], QUANTIZED_MAX_DIFF,
                                          name).to_dict()
    except (ParityError, InvarianceError) as e:
        _fail(res, d, str(e))
        return res
    res.seconds, res.bytes, res.published = time.perf_counter() - t0, dir_bytes(d), True
    return res


def _sts_gate(root: Path, results: dict[str, VariantResult], score_fn: ScoreFn, max_drop: float,
              scored_on: str) -> None:
    live = {n: _cpu(root / n) for n, r in results.items() if r.published}
    for name, g in spearman_gate(live, score_fn, max_drop).items():
        results[name].sts = {**g, "scored_on": scored_on}
        if not g["passed"]:
            _fail(results[name], root / name, f"STS Spearman ({scored_on}) {g['spearman']:.2f} is "
                  f"{-g['delta']:.2f} points below fp32 (max {max_drop})")


def _summary(r: VariantResult) -> dict[str, Any]:
    out: dict[str, Any] = {"published": r.published}
    if r.reason:
        out["reason"] = r.reason
    if r.parity:
        out["parity"] = {k: r.parity[k] for k in ("min_cosine", "mean_cosine", "max_abs_diff")}
    if r.invariance:
        out["invariance"] = {k: r.invariance[k] for k in ("max_abs_diff", "min_cosine", "sentences")}
    if r.sts:  # scored on the decision set (dev splits; `scored_on`), never a test split
        out["sts_gate_score"] = r.sts
    if r.graph_check:
        out["graph_check"] = {"ok": r.graph_check["ok"], "k_found": r.graph_check["k_found"],
                              "empirical": r.graph_check["empirical"]}
    return out


def export_encoder(
    encoder: Encoder,
    output: str | os.PathLike[str],
    variants: Sequence[str] = tuple(_DEFAULTS.variants),
    attention_op: str = _DEFAULTS.attention_op,
    opset: int = _DEFAULTS.opset,
    sts_gate: bool | ScoreFn = True,
    sts_max_pairs: int | None = None,
    max_spearman_drop: float = _DEFAULTS.max_spearman_drop,
    card_info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export, check, gate and atomically publish `encoder` to OUTPUT (see the module docstring).

    `sts_gate`: True = the average Spearman on the decision set (`DECISION_SUITE`, dev splits) through
    `bellm.evaluation`, False = skip (recorded), or a
    callable(encoder-like) -> Spearman x100. Raises `ParityError` (`InvarianceError` is one) / `GraphCheckError`
    when fp32 fails, and `ExportDestinationError` (before any work) when OUTPUT holds other files and `overwrite`
    is False. An OUTPUT that is a symbolic link is followed (the link stays). `card_info`
    (`bellm.export.card.run_card_info`): the recipe, data and STS results for the model cards.
    """
    wanted = normalize_variants(variants)
    if Path(output).is_symlink():  # publish into the link's target: a directory cannot be renamed over a link
        output = Path(os.path.realpath(output))
    check_destination(output, overwrite)
    if opset < MIN_OPSET:
        raise InputError(f"opset must be >= {MIN_OPSET}: the fused Attention / RotaryEmbedding / RMSNormalization "
                         "ops need it")
    start = time.perf_counter()
    results: dict[str, VariantResult] = {}
    with atomic_path(output) as root:
        results["fp32"] = _build_fp32(encoder, root, attention_op, opset)
        fp32 = _cpu(root / "fp32")
        for name in wanted[1:]:
            results[name] = _build_variant(encoder, root, name, attention_op, opset, fp32)
        if sts_gate is not False:
            scorer = suite_scorer(DECISION_SUITE, sts_max_pairs) if sts_gate is True else sts_gate
            pairs = "all pairs" if sts_max_pairs is None else f"first {sts_max_pairs} pairs per task"
            scored_on = "custom scorer" if sts_gate is not True else f"{suite_name(DECISION_SUITE)} ({pairs})"
            _sts_gate(root, results, scorer, max_spearman_drop, scored_on)
        elapsed = time.perf_counter() - start
        for r in results.values():
            if r.published:
                c = read_contract(root / r.name).to_dict()
                (root / r.name / "README.md").write_text(model_card(c, _card_lines(r), card_info, r.sts))
                write_sentence_transformers(root / r.name)
        summary = {
            "variants": {n: _summary(r) for n, r in results.items()},
            "published": [n for n, r in results.items() if r.published],
            "attention_op": attention_op,
            "opset": opset,
            "ir_version": read_contract(root / "fp32", verify_model=False).ir_version,
            "sts_gate": "skipped" if sts_gate is False else {
                "max_drop": max_spearman_drop, "max_pairs": sts_max_pairs,
                "suite": suite_name(DECISION_SUITE) if sts_gate is True else "custom scorer"},
            "export_seconds": round(elapsed, 2),
            "encoder": encoder.describe(),
        }
        write_json_atomic(root / "export.json", summary)
        (root / "README.md").write_text(_index(summary))
    log.info("exported %s to %s in %.1fs", summary["published"], output, elapsed)
    return ExportResult(Path(output), results, elapsed)


def _card_lines(r: VariantResult) -> dict[str, str]:
    lines = {}
    if r.graph_check:
        g = r.graph_check
        lines["graph check"] = f"ok, k={g['k_found']} (structural; empirical: {g['empirical']})"
    if r.parity:
        ref = "PyTorch" if r.name == "fp32" else "fp32 export"
        lines[f"vs {ref}"] = (f"min cosine {r.parity['min_cosine']:.6f}, max |diff| {r.parity['max_abs_diff']:.2e} "
                              "(batch 1/3/17/32, left and right padding)")
    if r.invariance:
        lines["batch/padding invariance"] = (f"max |diff| {r.invariance['max_abs_diff']:.1e} between a sentence alone "
                                             "and in batches (left/right padding, pad ids 0/7/31337, two orders)")
    if r.sts:
        lines["STS Spearman, dev (export gate)"] = (f"{r.sts['spearman']:.2f} (delta to fp32 {r.sts['delta']:+.2f}; "
                                                    f"{r.sts['scored_on']})")
    return lines


def _index(summary: dict[str, Any]) -> str:
    rows = "\n".join(f"| {n} | {'yes' if v['published'] else 'no: ' + v.get('reason', '')} |"
                     for n, v in summary["variants"].items())
    return ("# bellm ONNX export\n\nEach published variant directory is self-contained (model.onnx, tokenizer.json, "
            "bellm.json, README.md). Gate results: export.json.\n\n| variant | published |\n|---|---|\n" + rows + "\n")
