"""Graph rewrites on the traced ONNX IR model: make the attention nodes say what each layer is.

After tracing, every layer is a fused `Attention` node with `is_causal=0` and an explicit mask: the
causal layers get a triangular mask. `set_causality` gives every layer the padding visibility instead and
sets `is_causal=1` on the causal layers, so the graph itself states which layers see the future (and ORT
can use its causal kernels). `drop_gqa_expand` feeds unexpanded K/V heads to `Attention` (opset 23
supports grouped-query attention natively). `to_ms_mha` swaps each node for ORT's
`com.microsoft.MultiHeadAttention` (`unidirectional`, `key_padding_mask`, KV heads expanded), whose CUDA
kernels are flash / memory-efficient attention. `pack_heads` feeds `RotaryEmbedding` and `Attention` the
(B,S,H*D) projections directly (both ops take 3-D inputs given their head counts), dropping the Reshape +
Transpose pairs around every layer's attention: bit-identical output, ~3% faster on ORT CPU.

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


def _unsplit_heads(v: ir.Value) -> ir.Value | None:
    """x (B,S,H*D) when v = Transpose(0,2,1,3)(Reshape(x)) and neither feeds anything else, else None."""
    t = v.producer()
    if t is None or t.op_type != "Transpose" or len(v.uses()) != 1:
        return None
    perm = t.attributes.get("perm")
    r = t.inputs[0].producer() if t.inputs[0] is not None else None
    if perm is None or list(perm.as_ints()) != [0, 2, 1, 3] or r is None or r.op_type != "Reshape" \
            or len(r.outputs[0].uses()) != 1:
        return None
    return r.inputs[0]


def _merge_heads_consumer(v: ir.Value) -> ir.Value | None:
    """y (B,S,H*D) when v's only use is y = Reshape(Transpose(0,2,1,3)(v)) with nothing else reading the
    transpose, else None."""
    uses = list(v.uses())
    if len(uses) != 1 or uses[0].node.op_type != "Transpose":
        return None
    t = uses[0].node
    perm = t.attributes.get("perm")
    t_uses = list(t.outputs[0].uses())
    if perm is None or list(perm.as_ints()) != [0, 2, 1, 3] or len(t_uses) != 1 \
            or t_uses[0].node.op_type != "Reshape":
        return None
    return t_uses[0].node.outputs[0]


def pack_heads(model: ir.Model) -> int:
    """Run each ONNX `Attention` (after `drop_gqa_expand`) and its `RotaryEmbedding`s on (B,S,H*D) tensors.

    The traced layer splits heads before RoPE (Reshape + Transpose to (B,H,S,D)) and merges them after attention
    (Transpose + Reshape); both ops accept the packed 3-D layout when told their head counts (`num_heads` on
    RotaryEmbedding, `q_num_heads`/`kv_num_heads` on Attention), so the four Transpose/Reshape pairs per layer go.
    A layer whose pattern differs (e.g. per-head norms between the split and RoPE) is left as it is. Returns the
    number of layers packed."""
    packed = 0
    for node in attention_nodes(model.graph):
        if (node.domain, node.op_type) != ("", "Attention"):
            continue
        plan: list[tuple[ir.Node, int, ir.Value]] = []  # (node, input index, packed value)
        heads: list[int] = []
        for i in (0, 1):
            rope = node.inputs[i].producer() if node.inputs[i] is not None else None
            if rope is None or rope.op_type != "RotaryEmbedding" or len(node.inputs[i].uses()) != 1 \
                    or "num_heads" not in rope.attributes:
                break
            src = _unsplit_heads(rope.inputs[0])
            if src is None:
                break
            plan.append((rope, 0, src))
            heads.append(rope.attributes["num_heads"].as_int())
        v_src = _unsplit_heads(node.inputs[2]) if node.inputs[2] is not None else None
        merged = _merge_heads_consumer(node.outputs[0])
        if len(plan) != 2 or v_src is None or merged is None:
            continue
        for n, idx, src in [*plan, (node, 2, v_src)]:
            n.replace_input_with(idx, src)
        for rope, _, _ in plan:
            rope.outputs[0].shape = None  # now (B,S,H*D): let shape inference say so
        node.attributes["q_num_heads"] = ir.AttrInt64("q_num_heads", heads[0])
        node.attributes["kv_num_heads"] = ir.AttrInt64("kv_num_heads", heads[1])
        out = node.outputs[0]
        out.shape = None
        merged.replace_all_uses_with(out, replace_graph_outputs=True)
        packed += 1
    RemoveUnusedNodesPass()(model)
    return packed


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
