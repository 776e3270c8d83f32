"""`check_graph`: read an exported model and verify that exactly the last k attention layers see the future.

Two independent checks, both against `bellm.json` (`num_layers`, `bidirectional_layers`):

* structural: one fused attention node per layer (ONNX `Attention` or `com.microsoft.MultiHeadAttention`),
  in layer order; a node sees future positions iff its causal attribute is off (`is_causal` /
  `unidirectional`) and no triangular comparison (`Less*`, `Greater*`, `Trilu`) feeds its mask;
* empirical (ORT): the model is run once on a probe batch with the inputs of every attention node
  exposed; each node is then re-run alone with the keys/values of *future real* positions perturbed (does
  the output at the first real query move?) and with the keys/values of *padding* positions perturbed
  (must move nothing at real queries, on either padding side).

Imports only onnx, onnxruntime and numpy (no torch), so it can run where the model is deployed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from bellm.contract import ExportDescriptor, read_export_descriptor
from bellm.families import attention_namespace

MS_DOMAIN = "com.microsoft"
FUSED = {("", "Attention"): ("is_causal", 3), (MS_DOMAIN, "MultiHeadAttention"): ("unidirectional", 5)}
TRIANGULAR_OPS = {"Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Trilu"}
PROBE_SEQ = 8
_LAYER_RE = attention_namespace()  # the exporter's name of layer i's attention module
PROTO_LIMIT = 1_800_000_000  # below the 2 GB protobuf limit: serialise in memory, else via a temp dir


class GraphCheckError(AssertionError):
    """The exported graph does not implement the `bellm.json` contract."""


@dataclass
class LayerCheck:
    layer: int
    node: str
    op: str
    causal_attribute: bool
    triangular_mask: bool
    sees_future: bool  # structural verdict
    sees_future_measured: bool | None = None  # empirical verdict (None: not measured)
    padding_invisible: bool | None = None


@dataclass
class GraphReport:
    model: str
    expected: list[bool]  # expected[i]: layer i is bidirectional
    layers: list[LayerCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    empirical: str = "not run"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def k_found(self) -> int:
        """Bidirectional layers as found (structural), counted from the end."""
        k = 0
        for layer in reversed(self.layers):
            if not layer.sees_future:
                break
            k += 1
        return k

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "k_found": self.k_found}


def expected_flags(num_layers: int, k: int) -> list[bool]:
    """The contract: exactly the last k of num_layers layers are bidirectional."""
    return [i >= num_layers - k for i in range(num_layers)]


def _layer_index(node: onnx.NodeProto) -> int | None:
    ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
    found = _LAYER_RE.findall(ns)
    return int(found[-1]) if found else None


def fused_attention_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = [n for n in graph.node if (n.domain, n.op_type) in FUSED]
    idx = [_layer_index(n) for n in nodes]
    if nodes and all(i is not None for i in idx):
        nodes = [n for _, n in sorted(zip(idx, nodes, strict=True), key=lambda p: p[0])]
    return nodes


def _attr(node: onnx.NodeProto, name: str, default: Any = 0) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def mask_is_triangular(graph: onnx.GraphProto, mask: str, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """True when a position comparison (a causal triangle) is among the mask's ancestors."""
    seen, stack = set(), [mask]
    while stack:
        name = stack.pop()
        node = producers.get(name)
        if not name or name in seen or node is None:
            continue
        seen.add(name)
        if node.op_type in TRIANGULAR_OPS:
            return True
        stack.extend(node.input)
    return False


def structural(model: onnx.ModelProto) -> list[LayerCheck]:
    graph = model.graph
    producers = _producers(graph)
    out = []
    for i, node in enumerate(fused_attention_nodes(graph)):
        attr, mask_idx = FUSED[(node.domain, node.op_type)]
        causal = bool(_attr(node, attr, 0))
        mask = node.input[mask_idx] if len(node.input) > mask_idx else ""
        tri = bool(mask) and mask_is_triangular(graph, mask, producers)
        layer = _layer_index(node)
        index = i if layer is None else layer
        out.append(LayerCheck(index, node.name, node.op_type, causal, tri, not causal and not tri))
    return out


# ---------------------------------------------------------------- empirical check with onnxruntime


def probe_feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Batch of 3 x PROBE_SEQ: unpadded, right-padded by 3, left-padded by 3."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 200, size=(3, PROBE_SEQ), dtype=np.int64)
    mask = np.ones((3, PROBE_SEQ), dtype=np.int64)
    mask[1, -3:] = 0
    mask[2, :3] = 0
    feeds = {"input_ids": ids, "attention_mask": mask}
    if any(i.name == "span_mask" for i in model.graph.input):
        feeds["span_mask"] = mask.copy()
    return feeds


def _session(model: onnx.ModelProto, tmp: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # run the graph as written
    if model.ByteSize() < PROTO_LIMIT:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    path = os.path.join(tmp, "probe.onnx")
    onnx.save(model, path, save_as_external_data=True, location="probe.onnx.data")
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def capture_inputs(
    model: onnx.ModelProto, nodes: list[onnx.NodeProto], feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Values of every attention node input on the probe batch (added as extra graph outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = sorted({x for n in nodes for x in n.input if x} - {i.name for i in m.graph.input})
    existing = {o.name for o in m.graph.output}
    for name in names:
        if name not in existing:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(m, tmp)
        values = sess.run(names, feeds)
    out = dict(zip(names, values, strict=True))
    out.update(feeds)
    return out


def _single_node_session(node: onnx.NodeProto, values: Mapping[str, np.ndarray], opsets: list):
    import onnxruntime as ort

    inputs = [x for x in node.input if x]
    vi = [
        helper.make_tensor_value_info(x, helper.np_dtype_to_tensor_dtype(values[x].dtype), values[x].shape)
        for x in inputs
    ]
    out = [onnx.ValueInfoProto(name=node.output[0])]
    g = helper.make_graph([node], "probe", vi, out)
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = min(m.ir_version, 10)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _perturb(x: np.ndarray, rows_pos: list[tuple[int, int]], rng: np.random.Generator) -> np.ndarray:
    """Add noise at (batch, position) pairs along the sequence axis (rank 4: B,H,S,D; rank 3: B,S,E)."""
    y = x.astype(np.float32).copy()
    for b, p in rows_pos:
        if x.ndim == 4:
            y[b, :, p, :] += rng.standard_normal(y[b, :, p, :].shape) * 3.0
        else:
            y[b, p, :] += rng.standard_normal(y[b, p, :].shape) * 3.0
    return y.astype(x.dtype)


def _at(out: np.ndarray, b: int, p: int) -> np.ndarray:
    return out[b, :, p, :] if out.ndim == 4 else out[b, p, :]


def measure_node(
    node: onnx.NodeProto, values: Mapping[str, np.ndarray], mask: np.ndarray, opsets: list
) -> tuple[bool, bool]:
    """(sees future real positions, padding invisible) for one attention node, measured with ORT."""
    sess = _single_node_session(node, values, opsets)
    names = [x for x in node.input if x]
    feeds = {x: values[x] for x in names}
    base = sess.run(None, feeds)[0].astype(np.float32)
    rng = np.random.default_rng(1)
    real = [np.flatnonzero(row) for row in mask]
    first = [(b, int(r[0])) for b, r in enumerate(real) if len(r) > 1]
    future = [(b, int(p)) for b, r in enumerate(real) for p in r[1:]]
    pads = [(b, int(p)) for b, row in enumerate(mask) for p in np.flatnonzero(row == 0)]
    k_name, v_name = node.input[1], node.input[2]

    def run(positions: list[tuple[int, int]]) -> np.ndarray:
        f = dict(feeds)
        f[k_name] = _perturb(values[k_name], positions, rng)
        f[v_name] = _perturb(values[v_name], positions, rng)
        return sess.run(None, f)[0].astype(np.float32)

    moved = run(future)
    sees = any(np.abs(_at(moved, b, p) - _at(base, b, p)).max() > 1e-3 for b, p in first)
    padded = run(pads)
    invisible = all(
        np.abs(_at(padded, b, int(p)) - _at(base, b, int(p))).max() <= 1e-3 for b, r in enumerate(real) for p in r
    )
    return sees, invisible


def layer_mask(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The (B,S) mask the layers see: the graph re-lays rows out real-tokens-first (a `GatherElements` of
    `attention_mask`, see `bellm.masks.left_align_order`) when it has that step, else the input mask."""
    aligned = [n.output[0] for n in model.graph.node
               if n.op_type == "GatherElements" and n.input[0] == "attention_mask"]
    if not aligned:
        return feeds["attention_mask"]
    return capture_inputs(model, [onnx.NodeProto(input=aligned[:1])], feeds)[aligned[0]]


def empirical(model: onnx.ModelProto, layers: list[LayerCheck]) -> str:
    """Fill `sees_future_measured` / `padding_invisible`; returns 'ok' or why it was skipped."""
    nodes = fused_attention_nodes(model.graph)
    feeds = probe_feeds(model)
    try:
        values = capture_inputs(model, nodes, feeds)
    except Exception as e:  # noqa: BLE001 - e.g. no CPU kernel for a dtype: reported, structural still holds
        return f"skipped: the probe run failed on CPU ({type(e).__name__}: {str(e)[:200]})"
    opsets = list(model.opset_import)
    mask = layer_mask(model, feeds)
    for layer, node in zip(layers, nodes, strict=True):
        sees, invisible = measure_node(node, values, mask, opsets)
        layer.sees_future_measured, layer.padding_invisible = sees, invisible
    return "ok"


def _layer_contract(
    bellm_json: str | os.PathLike[str] | Mapping[str, Any] | ExportDescriptor | None, model_path: Path
) -> tuple[int, int]:
    """(num_layers, bidirectional_layers) from the descriptor (read through `bellm.contract`), or a mapping."""
    if isinstance(bellm_json, ExportDescriptor):
        return bellm_json.num_layers, bellm_json.bidirectional_layers
    if isinstance(bellm_json, Mapping):
        return int(bellm_json["num_layers"]), int(bellm_json["bidirectional_layers"])
    where = bellm_json if bellm_json is not None else model_path.parent
    desc = read_export_descriptor(where, verify_model=False, check_files=False)
    return desc.num_layers, desc.bidirectional_layers


def check_graph(
    model_path: str | os.PathLike[str],
    bellm_json: str | os.PathLike[str] | Mapping[str, Any] | ExportDescriptor | None = None,
    run_empirical: bool = True,
    strict: bool = True,
) -> GraphReport:
    """Verify that exactly the last `bidirectional_layers` of `num_layers` attention layers see the future.

    `bellm_json` is a path, a descriptor, a mapping with those two keys, or None for the `bellm.json` beside
    the model (`num_layers` counts the layers the encoder runs, after `keep_layers`). With `strict`,
    any problem raises `GraphCheckError`; otherwise read `report.ok` / `report.problems`.
    """
    model_path = Path(model_path)
    num_layers, k = _layer_contract(bellm_json, model_path)
    model = onnx.load(str(model_path))
    report = GraphReport(str(model_path), expected_flags(num_layers, k))
    report.layers = structural(model)
    if len(report.layers) != num_layers:
        report.problems.append(
            f"{len(report.layers)} fused attention nodes for {num_layers} layers (unfused attention or wrong model)"
        )
    found = [layer.sees_future for layer in report.layers]
    if found != report.expected:
        report.problems.append(
            f"structural: bidirectional layers {_which(found)}, contract says {_which(report.expected)}"
        )
    if run_empirical and len(report.layers) == num_layers:
        report.empirical = empirical(model, report.layers)
        if report.empirical == "ok":
            measured = [bool(layer.sees_future_measured) for layer in report.layers]
            if measured != report.expected:
                report.problems.append(
                    f"measured: bidirectional layers {_which(measured)}, contract says {_which(report.expected)}"
                )
            leaky = [layer.layer for layer in report.layers if not layer.padding_invisible]
            if leaky:
                report.problems.append(f"measured: padding is visible to real tokens in layers {leaky}")
    if strict and report.problems:
        raise GraphCheckError(f"{model_path}: " + "; ".join(report.problems))
    return report


def _which(flags: list[bool]) -> list[int]:
    return [i for i, f in enumerate(flags) if f]
