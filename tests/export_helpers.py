"""One shared tiny export per test session (tracing dominates export time), used by the export and runtime tests."""

from __future__ import annotations

import functools
from pathlib import Path

SCORES = {"fp32": 80.0, "int8": 79.8, "fp16": 80.1}  # fixed STS scores: every variant passes the gate


def fixed_score(scores: dict[str, float]):
    """A scoring callback giving each variant a set Spearman (keyed by the variant in its contract)."""
    return lambda enc: scores[enc.contract["variant"]]


@functools.cache
def shared_export(model_dir: str, root: str):
    """(export dir, encoder, ExportResult): k=2 of 4, max_length 24 (long texts truncate), all variants."""
    from bellm.encoder import load_encoder
    from bellm.export.api import export_encoder

    enc = load_encoder(model_dir, bidirectional_layers=2, max_length=24)
    out = Path(root) / "tiny"
    result = export_encoder(enc, out, ["fp32", "int8", "fp16"], sts_gate=fixed_score(SCORES))
    return out, enc, result


MEMO_MAX_PARAMS = 20_000_000  # the tiny test models; the real one (135M) is traced every time, as users do


def trace_key(module, dtype, opset: int) -> str | None:
    """Everything the traced graph depends on: structure, every weight's bytes, flags, pooling, dtype, opset
    (the example inputs are fixed: `bellm.export.trace.example_inputs`). None: too large to be worth hashing."""
    import hashlib

    import torch

    state = module.state_dict()
    if sum(t.numel() for t in state.values()) > MEMO_MAX_PARAMS:
        return None
    h = hashlib.sha256(repr(module).encode())
    h.update(repr((tuple(module.backbone.flags), module.pooling, str(dtype), opset)).encode())
    for name, t in state.items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def memoized(trace):
    """`bellm.export.trace.trace`, run once per distinct input in a test process. Tracing a 4-layer model takes
    ~14 s of torch.export and decomposition, most of a tiny export, and many tests export the same tiny encoder
    to test what happens *after* the trace (gates, variants, destinations, attention ops). Each caller gets its
    own copy: the rewrite mutates the graph in place. (`bellm.export.api.build_graph`, the one caller, passes
    all three arguments.)"""
    import onnx
    import onnx_ir as ir

    cache: dict[str, bytes] = {}

    def wrapper(module, dtype, opset: int) -> ir.Model:
        key = trace_key(module, dtype, opset)
        if key is not None and key in cache:
            proto = onnx.ModelProto()
            proto.ParseFromString(cache[key])
            return ir.serde.deserialize_model(proto)
        model = trace(module, dtype, opset)
        if key is not None:
            cache[key] = ir.serde.serialize_model(model).SerializeToString()
        return model

    return wrapper
