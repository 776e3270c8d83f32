"""Precision variants of an exported fp32 model.

* `int8` (CPU): `onnxruntime.quantization.quantize_dynamic`, MatMul weights only, per-channel weight scales.
  `Attention` is never quantised (ORT rejects the result). Kept fp32: the MLP down-projections (their inputs,
  SwiGLU products, have the heavy-tailed ranges that per-tensor dynamic activation scales handle worst) and
  every MatMul of the k bidirectional layers (the layers the conversion changed, which feed the pooled token).
  Measured on SmolLM2-135M, k=2, STS-B test (1379 pairs), fp32 Spearman 66.59:
  all MatMuls per-channel: mean cos 0.956, Spearman -22.4 (500 pairs); + down_proj fp32: cos 0.9945, -1.01;
  + the 2 bidirectional layers fp32: cos 0.9961, -0.50.
* `fp16` (CUDA): traced from a half-precision copy of the module (see `bellm.export.trace`), which keeps
  RoPE angles and RMSNorm statistics in fp32 (transformers does, and `RMSNormalization` has stash_type=1),
  softmax inside the fused attention, and pooling / L2 normalisation in fp32.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import onnx

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


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    keep_fp32: tuple[str, ...] = KEEP_FP32_MODULES,
    per_channel: bool = True,
    keep_layers: list[int] | None = None,
) -> dict[str, object]:
    """Dynamic int8 quantisation of the MatMul weights of `src` into `dst`; returns what was done.

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
