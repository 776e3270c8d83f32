"""Precision variants of an exported fp32 model.

* `int8` (CPU): per-row (per-token) dynamic int8 activations, per-channel int8 weights after SmoothQuant-style
  smoothing folded into the RMSNorm / up-projection weights, `com.microsoft.MatMulIntegerToFloat` (MLAS u8s8:
  VNNI / AMX / AVX2 kernels); see `bellm.export.rowquant`. No scale is shared between tokens, integer
  accumulation is exact, so with the graph's canonical padding layout (`bellm.masks.left_align_order`) a
  sentence's embedding is bit-identical alone or in any batch (the invariance gate measures 0.0).
* `quantize_int8_nbits` (the `int8` form published until 2026-12; kept for `bench/int8_probe.py` and callers
  who want it): `com.microsoft.MatMulNBits` with 8-bit symmetric weights in blocks of 32 along K and
  `accuracy_level=4`, activations quantised to int8 per row and per block inside the kernel. Also invariant
  (0.0), slightly more faithful (min cosine 0.9992 vs ~0.998), but slower than fp32 on every CPU measured
  (its 8-bit kernels do not reach MLAS's fast u8s8 GEMM).
* `quantize_dynamic_int8` (not a published variant any more): `onnxruntime.quantization.quantize_dynamic`
  computes ONE activation scale over the whole (B,S,H) tensor, padded positions included, so a sentence's
  embedding moves with its batch neighbours and even with the pad id (up to 3e-2 per component measured).
  It is kept to show the invariance gate rejecting it (tests) and for benchmarks.
* `fp16` (CUDA): traced from a half-precision copy of the module (see `bellm.export.trace`), which keeps
  RoPE angles and RMSNorm statistics in fp32 (transformers does, and `RMSNormalization` has stash_type=1),
  softmax inside the fused attention, and pooling / L2 normalisation in fp32.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import onnx

from bellm.tokenize import Encoded

log = logging.getLogger(__name__)

KEEP_FP32_MODULES = (r"mlp\.down_proj",)  # regexes over the exporter's module path of each MatMul
EXTERNAL_DATA_BYTES = 1_800_000_000  # beyond this the model must store weights as external data (2 GB limit)


def matmuls_in(model_path: str | os.PathLike[str], module_parts: tuple[str, ...]) -> list[str]:
    """Names of MatMul nodes whose exporter module path matches one of the regexes `module_parts`."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = []
    for node in model.graph.node:
        ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        if node.op_type == "MatMul" and any(re.search(part, ns) for part in module_parts):
            names.append(node.name)
    return names


def layer_patterns(layers: list[int]) -> tuple[str, ...]:
    """A module-path regex matching every MatMul of the given decoder layers (none for an empty list)."""
    return (rf"\.layers\.({'|'.join(str(i) for i in layers)})[.:]",) if layers else ()


def quantize_dynamic_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keep_fp32: tuple[str, ...] = KEEP_FP32_MODULES,
    per_channel: bool = True,
    keep_layers: list[int] | None = None,
) -> dict[str, object]:
    """Dynamic int8 quantisation (batch dependent: never published) of `src` into `dst`; returns what was done.

    `keep_fp32`: module-path regexes of MatMuls left in fp32; `keep_layers`: whole layers left in fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_fp32 = tuple(keep_fp32) + layer_patterns(keep_layers or [])
    excluded = matmuls_in(src, keep_fp32) if keep_fp32 else []
    big = Path(src).stat().st_size > EXTERNAL_DATA_BYTES or any(Path(src).parent.glob("*.data"))
    quantize_dynamic(
        model_input=str(src),
        model_output=str(dst),
        op_types_to_quantize=["MatMul"],
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        nodes_to_exclude=excluded,
        use_external_data_format=big,
        extra_options={"MatMulConstBOnly": True},
    )
    model = onnx.load(str(dst), load_external_data=False)
    quantized = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in model.graph.node)
    log.info("int8: %d MatMul quantised, %d kept fp32 (%s)", quantized, len(excluded), ", ".join(keep_fp32))
    return {"quantized_matmuls": quantized, "fp32_matmuls_kept": len(excluded), "keep_fp32": list(keep_fp32),
            "keep_layers": list(keep_layers or []), "per_channel": per_channel}


INT8_BLOCK_SIZE = 32  # weights and activations share one scale per 32 values along K
INT8_ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations (per row, per block) and int8 GEMM


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: Sequence[Encoded],
) -> dict[str, object]:
    """The published int8 form of `src` into `dst`: smoothed per-row int8 (`bellm.export.rowquant`);
    `calibration`: tokenised sentences that set the smoothing factors (`rowquant.calibration_encodings`)."""
    from bellm.export.rowquant import quantize_rows_int8

    return quantize_rows_int8(src, dst, calibration)


def quantize_int8_nbits(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    block_size: int = INT8_BLOCK_SIZE,
    accuracy_level: int = INT8_ACCURACY_LEVEL,
) -> dict[str, object]:
    """8-bit blockwise weights + per-row/per-block int8 activations (`MatMulNBits`) of `src` into `dst`."""
    return quantize_nbits(src, dst, 8, block_size, accuracy_level)


def quantize_nbits(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    bits: int,
    block_size: int,
    accuracy_level: int,
) -> dict[str, object]:
    """Every weight MatMul of `src` as `MatMulNBits` (`bits`-bit symmetric blocks along K) into `dst`
    (`quantize_int8_nbits` is bits=8; other widths are for `bench/int8_probe.py`)."""
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    big = Path(src).stat().st_size > EXTERNAL_DATA_BYTES or any(Path(src).parent.glob("*.data"))
    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, accuracy_level=accuracy_level, bits=bits,
        quant_format=QuantFormat.QOperator, op_types_to_quantize=("MatMul",),
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=bits, block_size=block_size, is_symmetric=True,
                                     accuracy_level=accuracy_level, algo_config=config)
    ort_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = ort_log.level
    ort_log.setLevel(logging.WARNING)  # it logs every node it skips at INFO
    try:
        quantizer.process()
    finally:
        ort_log.setLevel(level)
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=big)
    model = onnx.load(str(dst), load_external_data=False)
    quantized = sum(n.op_type == "MatMulNBits" for n in model.graph.node)
    left = sum(n.op_type == "MatMul" for n in model.graph.node)
    log.info("%d MatMul -> MatMulNBits (%d-bit, block %d, accuracy level %d), %d left fp32",
             quantized, bits, block_size, accuracy_level, left)
    return {"method": "MatMulNBits", "bits": bits, "block_size": block_size, "accuracy_level": accuracy_level,
            "symmetric": True, "quantized_matmuls": quantized, "fp32_matmuls": left}
