"""Trace a `SentenceEncoderModule` to an ONNX IR model with `torch.onnx.export(dynamo=True)`.

The traced graph holds the whole encoder: embeddings, the decoder with explicit masks, pooling and L2
normalisation. Facts this module relies on (verified on torch 2.13 / onnxscript 0.7, transformers 5):

* the dynamo exporter at opset 23 lowers SDPA to the fused ONNX `Attention` node, RoPE to
  `RotaryEmbedding` and RMSNorm to `RMSNormalization` (stash_type=1: statistics in fp32);
* every traced `Attention` gets an explicit (B,1,S,S) boolean mask and `is_causal=0` (transformers passes
  `is_causal=False` whenever a mask is given), so `bellm.export.rewrite` turns the causal layers into
  `is_causal=1` + padding mask afterwards;
* ORT's `RotaryEmbedding` wants batch-sized cos/sin: `position_ids_from_mask` already gives (B,S);
* an output named `embedding` collides with the name the exporter gives the token-embedding `Gather`
  (ORT then rejects the model), hence `sentence_embedding`.

Inputs are first re-laid out so each row's real tokens come first (`bellm.masks.left_align_order`): the
kernels then see one layout whatever side or id the caller padded with, so float reductions (and hence
low-precision rounding) cannot depend on the padding side.

The padding visibility (from `bellm.masks.visibility`, the single home of mask logic) is traced as a
temporary second output so the rewrite can hand it to every layer even when no layer is bidirectional
(k=0), where the exporter would otherwise have removed it as dead code.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator

import onnx_ir as ir
import torch
from torch import nn

from bellm.backbone import SentenceEncoderModule, unwrap_decoder
from bellm.contract import OUTPUT_NAME, inputs_for
from bellm.export.optimize import optimize_graph
from bellm.masks import left_align_order, visibility
from bellm.pooling import l2_normalize, pool

log = logging.getLogger(__name__)

PAD_VISIBILITY = "bellm_padding_visibility"  # temporary output, removed by the rewrite


class ExportWrapper(nn.Module):
    """The traced function: ids, mask[, span] → (L2-normalised fp32 embedding (B,H), padding visibility)."""

    def __init__(self, module: SentenceEncoderModule) -> None:
        super().__init__()
        self.module = module

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Canonical layout first: real tokens at the front of each row, whatever side the caller padded.
        order = left_align_order(attention_mask)  # (B,S)
        input_ids, attention_mask = input_ids.gather(1, order), attention_mask.gather(1, order)
        if span_mask is not None:
            span_mask = span_mask.gather(1, order)
        h = self.module.backbone(input_ids, attention_mask)  # (B,S,H), model dtype
        # Pool and normalise in fp32 whatever the model dtype (fp16 sums/norms lose digits).
        emb = l2_normalize(pool(h.float(), attention_mask, self.module.pooling, span_mask))  # (B,H)
        return emb, visibility(attention_mask, causal=False)  # (B,H), (B,1,S,S)


def input_names(pooling: str) -> list[str]:
    """Graph inputs, as the contract names them (`bellm.contract.inputs_for`)."""
    return list(inputs_for(pooling))


@contextlib.contextmanager
def export_mode(module: SentenceEncoderModule) -> Iterator[None]:
    """Explicit masks always, and the SDPA path (the one that lowers to fused `Attention`), restored after."""
    backbone = module.backbone
    cfg = unwrap_decoder(backbone.decoder).config
    old_skip, old_impl = backbone.allow_mask_skip, cfg._attn_implementation
    backbone.allow_mask_skip = False
    cfg._attn_implementation = "sdpa"
    try:
        yield
    finally:
        backbone.allow_mask_skip = old_skip
        cfg._attn_implementation = old_impl


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The exporter prints progress lines and its passes log every rewrite at INFO: keep both out of our logs."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def example_inputs(pooling: str, vocab: int) -> tuple[torch.Tensor, ...]:
    """Batch 3 x seq 8 with padding on both sides, so no dimension specialises to 0/1."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, max(2, min(vocab, 1000)), (3, 8), generator=g)  # (3,8)
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, :2] = 0
    return (ids, mask, mask.clone()) if len(inputs_for(pooling)) == 3 else (ids, mask)


def trace(module: SentenceEncoderModule, dtype: torch.dtype = torch.float32, opset: int = 23) -> ir.Model:
    """The encoder as an ONNX IR model (not yet rewritten). fp16 traces a half-precision copy."""
    if dtype != torch.float32:
        module = copy.deepcopy(module).to(dtype)
    module = module.eval()
    names = input_names(module.pooling)
    vocab = int(module.backbone.config.vocab_size)
    args = example_inputs(module.pooling, vocab)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    dyn = {name: {0: batch, 1: seq} for name in names}
    with export_mode(module), warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            ExportWrapper(module),
            args,
            dynamo=True,
            opset_version=opset,
            input_names=names,
            output_names=[OUTPUT_NAME, PAD_VISIBILITY],
            dynamic_shapes=dyn,
            verbose=False,
            optimize=False,  # `optimize_graph` below: the default optimizer less its one quadratic rule
        )
    if prog is None:  # pragma: no cover - dynamo=True always returns a program
        raise RuntimeError("torch.onnx.export returned no program")
    optimize_graph(prog.model)
    return prog.model
