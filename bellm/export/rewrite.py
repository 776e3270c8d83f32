"""Graph rewrites on the traced ONNX IR model: make the attention nodes say what each layer is.

After tracing, every layer is a fused `Attention` node with `is_causal=0` and an explicit mask: the
causal layers get a triangular mask. `set_causality` gives every layer the padding visibility instead and
sets `is_causal=1` on the causal layers, so the graph itself states which layers see the future (and ORT
can use its causal kernels). `drop_gqa_expand` feeds unexpanded K/V heads to `Attention` (opset 23
supports grouped-query attention natively). `to_ms_mha` swaps each node for ORT's
`com.microsoft.MultiHeadAttention` (`unidirectional`, `key_padding_mask`, KV heads expanded), whose CUDA
kernels are flash / memory-efficient attention.

Every function raises `RewriteError` when the graph is not the expected shape: we never fall back silently.
Imports only onnx_ir, numpy and the torch-free `bellm.families` (which names a layer's attention).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from bellm.families import attention_namespace

MS_DOMAIN = "com.microsoft"
ATTENTION_OPS = {("", "Attention"), (MS_DOMAIN, "MultiHeadAttention")}
_LAYER_RE = attention_namespace()


class RewriteError(RuntimeError):
    """The traced graph does not have the structure a rewrite needs (reported, never papered over)."""


def namespace(node: ir.Node) -> str:
    """The exporter's module path for a node (e.g. `...layers.3.self_attn...`), or ''."""
    return node.metadata_props.get("namespace", "")


def layer_of(node: ir.Node) -> int | None:
    m = _LAYER_RE.findall(namespace(node))
    return int(m[-1]) if m else None


def attention_nodes(graph: ir.Graph) -> list[ir.Node]:
    """Fused attention nodes in layer order (module path when recorded, else graph order)."""
    nodes = [n for n in graph if (n.domain, n.op_type) in ATTENTION_OPS]
    layers = [layer_of(n) for n in nodes]
    if all(i is not None for i in layers):
        nodes = [n for _, n in sorted(zip(layers, nodes, strict=True), key=lambda p: p[0])]
    return nodes


def expect_layers(graph: ir.Graph, num_layers: int) -> list[ir.Node]:
    nodes = attention_nodes(graph)
    if len(nodes) != num_layers:
        raise RewriteError(
            f"expected {num_layers} fused attention nodes (one per layer), the exporter produced {len(nodes)}; "
            "the attention was not lowered to ONNX Attention (unsupported architecture or attention implementation)"
        )
    return nodes


def _output(graph: ir.Graph, name: str) -> ir.Value:
    for v in graph.outputs:
        if v.name == name:
            return v
    raise RewriteError(f"graph has no output {name!r}")


def _graph_input(graph: ir.Graph, name: str) -> ir.Value:
    for v in graph.inputs:
        if v.name == name:
            return v
    raise RewriteError(f"graph has no input {name!r}")


def drop_output(model: ir.Model, name: str) -> None:
    """Remove a graph output and whatever only it needed."""
    graph = model.graph
    graph.outputs.remove(_output(graph, name))
    RemoveUnusedNodesPass()(model)


def set_causality(model: ir.Model, flags: Sequence[bool], pad_visibility: str) -> None:
    """Layer i: padding visibility as the mask; `is_causal = 0 if flags[i] else 1` (flags[i] = bidirectional)."""
    graph = model.graph
    vis = _output(graph, pad_visibility)
    for node, bidir in zip(expect_layers(graph, len(flags)), flags, strict=True):
        if (node.domain, node.op_type) != ("", "Attention") or len(node.inputs) < 4:
            raise RewriteError(f"{node.name}: expected ONNX Attention(Q, K, V, attn_mask)")
        node.replace_input_with(3, vis)
        node.attributes["is_causal"] = ir.AttrInt64("is_causal", 0 if bidir else 1)
    drop_output(model, pad_visibility)


def _expanded_source(v: ir.Value) -> ir.Value | None:
    """x (B,Hkv,S,D) when v = Reshape(Expand(Unsqueeze(x, 2))) — transformers' `repeat_kv` — else None."""
    r = v.producer()
    if r is None or r.op_type != "Reshape":
        return None
    e = r.inputs[0].producer() if r.inputs[0] is not None else None
    if e is None or e.op_type != "Expand":
        return None
    u = e.inputs[0].producer() if e.inputs[0] is not None else None
    if u is None or u.op_type != "Unsqueeze":
        return None
    src = u.inputs[0]
    return src if src is not None and src.shape is not None and len(src.shape) == 4 else None


def drop_gqa_expand(model: ir.Model) -> int:
    """Feed the un-repeated K/V heads to `Attention` (GQA handled by the op). Returns nodes changed."""
    changed = 0
    for node in attention_nodes(model.graph):
        if node.op_type != "Attention" or node.domain != "":
            continue
        srcs = [_expanded_source(node.inputs[i]) for i in (1, 2)]
        if all(s is not None for s in srcs):
            node.replace_input_with(1, srcs[0])
            node.replace_input_with(2, srcs[1])
            changed += 1
    RemoveUnusedNodesPass()(model)
    return changed


def _const(name: str, values: Sequence[int]) -> ir.Node:
    return ir.node("Constant", [], {"value": ir.tensor(np.asarray(values, dtype=np.int64), name=name)},
                   name=f"{name}_node", outputs=[ir.val(name)])


def _static_dims(v: ir.Value, name: str) -> tuple[int, int]:
    """(heads, head_dim) of a (B,H,S,D) value, which must be static."""
    shape = v.shape
    if shape is None or len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
        raise RewriteError(f"{name}: expected a (B,H,S,D) input with static H and D, got {shape}")
    return shape[1], shape[3]


def _layer_mask(graph: ir.Graph, mask: ir.Value) -> ir.Value:
    """The mask in the layout the layers see: the graph re-lays rows out real-tokens-first with a
    `GatherElements` of the input mask (`bellm.masks.left_align_order`); the input itself when it does not."""
    for node in graph:
        if node.op_type == "GatherElements" and node.inputs[0] is mask:
            return node.outputs[0]
    return mask


def to_ms_mha(model: ir.Model, flags: Sequence[bool], mask_input: str = "attention_mask") -> None:
    """Replace each `Attention` (after `set_causality`) by `com.microsoft.MultiHeadAttention`.

    Q/K/V (B,H,S,D) → (B,S,H*D); K/V must be head-expanded (run before `drop_gqa_expand`);
    `key_padding_mask` = int32(the aligned attention_mask) (B,S); `unidirectional` = 0 on bidirectional layers.
    The (B,S,H*D) output is reshaped back to (B,H,S,D) for the unchanged consumers; ORT's transpose
    optimiser folds the pair of transposes.
    """
    graph = model.graph
    nodes = expect_layers(graph, len(flags))
    mask = _layer_mask(graph, _graph_input(graph, mask_input))
    kpm = ir.node("Cast", [mask], {"to": ir.DataType.INT32}, name="bellm_key_padding_mask",
                  outputs=[ir.val("bellm_key_padding_mask")])
    flat, split = _const("bellm_bshd_to_bsh", [0, 0, -1]), None
    graph.insert_before(nodes[0], [kpm, flat])
    for i, (node, bidir) in enumerate(zip(nodes, flags, strict=True)):
        q, k, v = node.inputs[:3]
        heads, head_dim = _static_dims(q, f"{node.name} query")
        if _static_dims(k, f"{node.name} key")[0] != heads:
            raise RewriteError(f"{node.name}: K/V heads are not expanded; run to_ms_mha before drop_gqa_expand")
        if split is None:
            split = _const("bellm_bsh_to_bshd", [0, 0, heads, head_dim])
            graph.insert_before(nodes[0], split)
        new: list[ir.Node] = []
        flat3 = []
        for tag, x in (("q", q), ("k", k), ("v", v)):
            t = ir.node("Transpose", [x], {"perm": [0, 2, 1, 3]}, name=f"bellm_mha{i}_{tag}_t")
            r = ir.node("Reshape", [t.outputs[0], flat.outputs[0]], name=f"bellm_mha{i}_{tag}_r")
            new += [t, r]
            flat3.append(r.outputs[0])
        scale = node.attributes.get("scale")
        attrs = {"num_heads": heads, "unidirectional": 0 if bidir else 1}
        if scale is not None:
            attrs["scale"] = scale.as_float()
        mha = ir.node("MultiHeadAttention", [*flat3, None, kpm.outputs[0]], attrs, domain=MS_DOMAIN,
                      name=f"bellm_mha{i}", metadata_props=dict(node.metadata_props))
        back = ir.node("Reshape", [mha.outputs[0], split.outputs[0]], name=f"bellm_mha{i}_out_r")
        back_t = ir.node("Transpose", [back.outputs[0]], {"perm": [0, 2, 1, 3]}, name=f"bellm_mha{i}_out_t")
        new += [mha, back, back_t]
        graph.insert_before(node, new)
        node.outputs[0].replace_all_uses_with(back_t.outputs[0], replace_graph_outputs=True)
        graph.remove(node, safe=True)
    graph.opset_imports.setdefault(MS_DOMAIN, 1)
    RemoveUnusedNodesPass()(model)
