"""The graph clean-up after tracing: onnxscript's default optimizer, less one rule that is quadratic in graph size.

`torch.onnx.export(optimize=True)` runs `onnxscript.optimizer.optimize_ir`. One of its default rewrite rules,
`SlicesSplit` (two `Slice`s of one tensor → one `Split`), has two output nodes, and onnxscript's matcher tries
such a rule by indexing *every* node of the graph again for *every* candidate `Slice`. Our graphs hold many
Slices before the RoPE fusion, so on the 30-layer embedded model that one rule took about half of the export
under cProfile (onnxscript 0.7.2). It never fired on our graphs: without it the graph is node for node the same
and its build takes half the time (BENCHMARKS.md, "Export time: the graph optimizer").

Everything else is what torch 2.13's exporter runs (`onnxscript._framework_apis.torch_2_8.optimize`): inline,
constant folding + the other rewrite rules + dead-code removal to a fixed point (2 rounds), lift constants,
deduplicate initializers, CSE, name fixes; then the opset-23 fusions that `bellm.export.trace` relies on
(RMSNorm → `RMSNormalization`, RoPE → `RotaryEmbedding`). `tests/export/test_export_optimize.py` checks that the result
is the default optimizer's, node for node, on a tiny model.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnxscript import rewriter
from onnxscript.optimizer import _constant_folding
from onnxscript.rewriter import onnx_fusions

SKIPPED_RULES = frozenset({"SlicesSplit"})


def rewrite_rules() -> list[rewriter.RewriteRule]:
    """onnxscript's default rewrite rules without the quadratic ones; fails loudly if a pinned-version fact moved."""
    rules = list(rewriter._DEFAULT_REWRITE_RULES)
    names = {getattr(r, "name", None) for r in rules}
    if not SKIPPED_RULES <= names:
        raise RuntimeError(f"onnxscript's default rules no longer include {sorted(SKIPPED_RULES - names)}: "
                           "re-measure the export and update bellm.export.optimize")
    return [r for r in rules if getattr(r, "name", None) not in SKIPPED_RULES]


def optimize_graph(model: ir.Model, rounds: int = 2) -> None:
    """In place: what `torch.onnx.export(optimize=True)` would have run, without `SKIPPED_RULES`."""
    fixed_point = ir.passes.PassManager(
        [
            _constant_folding.FoldConstantsPass(
                shape_inference=True,
                input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
                output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT,
            ),
            rewriter.RewritePass(rewrite_rules()),
            common_passes.RemoveUnusedNodesPass(),
            common_passes.RemoveUnusedFunctionsPass(),
            common_passes.RemoveUnusedOpsetsPass(),
        ],
        steps=rounds,
        early_stop=True,
    )
    ir.passes.Sequential(
        common_passes.InlinePass(),
        fixed_point,
        common_passes.RemoveUnusedNodesPass(),
        common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common_passes.LiftSubgraphInitializersToMainGraphPass(),
        common_passes.DeduplicateInitializersPass(),
        common_passes.CommonSubexpressionEliminationPass(),
        common_passes.OutputFixPass(),
        common_passes.NameFixPass(),
    )(model)
    onnx_fusions.fuse(model)


def graph_signature(model: ir.Model) -> list[tuple]:
    """What "the same graph" means for `optimize_graph`'s promise: every node in order (domain, op, attribute values)
    and every initializer's name and shape."""
    out: list[tuple] = [(n.domain, n.op_type, tuple(sorted((k, repr(a.value)) for k, a in n.attributes.items())))
                        for n in model.graph]
    out += [("init", name, tuple(v.shape or ())) for name, v in sorted(model.graph.initializers.items())]
    return out
