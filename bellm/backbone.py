"""The BeLLM network: a decoder (of a `bellm.families` family) whose last k layers attend bidirectionally.

`BellmBackbone` runs the decoder's own modules (embeddings, rotary, layers, norm) with the masks from
`bellm.masks`, one per layer kind, so no transformers internals are patched. It works on a plain HF
decoder, on a PEFT-wrapped one (LoRA layers sit inside the same modules) and after `merge_and_unload`.
`SentenceEncoderModule` adds pooling and optional L2 normalisation; it is what training optimises and
what the ONNX exporter traces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from bellm.errors import InputError
from bellm.families import family_of, unwrap
from bellm.frozen_prefix import FrozenPrefix, first_adapted_layer
from bellm.masks import build_masks, convert_layers, position_ids_from_mask, resolve_k
from bellm.pooling import l2_normalize, pool


def unwrap_decoder(model: nn.Module) -> nn.Module:
    """The bare decoder stack under PEFT/CausalLM wrappers, of a supported family (`bellm.families.unwrap`)."""
    return unwrap(model)


def truncate_decoder(model: nn.Module, keep_layers: int | None) -> nn.Module:
    """Drop the decoder's top layers in place, keeping the bottom `keep_layers` (the final norm stays).

    Intermediate layers read out through the final norm can beat the last one (SmolLM2-135M: layer 28 of
    30 on STS-B dev), and a shorter model is faster by L/keep. The config is updated so every consumer
    (PEFT, masks, export) sees the truncated depth."""
    if keep_layers is None:
        return model
    inner = unwrap_decoder(model)
    n = len(inner.layers)
    if not 1 <= keep_layers <= n:
        raise InputError(f"keep_layers must be in [1, {n}] for this model, got {keep_layers}")
    if keep_layers < n:
        inner.layers = nn.ModuleList(list(inner.layers)[:keep_layers])
        for cfg in {id(inner.config): inner.config, id(model.config): model.config}.values():
            cfg.num_hidden_layers = keep_layers
            if isinstance(getattr(cfg, "layer_types", None), list):
                cfg.layer_types = cfg.layer_types[:keep_layers]
    return model


class BellmBackbone(nn.Module):
    """Token states (B,S,H) from a decoder whose last `k` layers are bidirectional."""

    def __init__(
        self,
        decoder: nn.Module,
        bidirectional_layers: int | str,
        allow_mask_skip: bool = True,
        frozen_layers: int | None = None,
    ):
        super().__init__()
        self.decoder = decoder
        inner = unwrap_decoder(decoder)
        self.family = family_of(inner.config)
        self.num_layers = len(inner.layers)
        self.k = resolve_k(bidirectional_layers, self.num_layers)
        self.flags = convert_layers(inner, self.k)
        # False when tracing for export: the graph must always carry explicit masks.
        self.allow_mask_skip = allow_mask_skip
        # The bottom layers a frozen-prefix cache (`bellm.frozen_prefix`, off unless enabled) may skip: causal and
        # below any LoRA module. `frozen_layers` is given by callers that know where an adapter sat before
        # it was merged away.
        if frozen_layers is None:
            frozen_layers = first_adapted_layer(inner.layers)
        self.prefix = FrozenPrefix(min(frozen_layers, self.num_layers - self.k))

    @property
    def config(self):  # noqa: ANN201 - the HF config of the wrapped decoder
        return unwrap_decoder(self.decoder).config

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        dec = unwrap_decoder(self.decoder)
        start, h = 0, None
        if not output_hidden_states:
            start, h = self._from_prefix_cache(dec, input_ids, attention_mask)
        if h is None:
            h = self.family.embed(dec, input_ids)  # (B,S,H)
        h, states = self._layers(dec, h, attention_mask, start, len(self.flags), output_hidden_states)
        h = dec.norm(h)  # (B,S,H)
        return (h, states) if output_hidden_states else h

    def _layers(
        self, dec: nn.Module, h: torch.Tensor, attention_mask: torch.Tensor, start: int, stop: int,
        keep_states: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Layers [start, stop) on h (B,S,H), with positions and masks from the attention mask."""
        pos = position_ids_from_mask(attention_mask)  # (B,S)
        rope = dec.rotary_emb(h, position_ids=pos)  # (cos, sin), each (B,S,D)
        masks = build_masks(attention_mask, dec.config._attn_implementation, h.dtype, self.allow_mask_skip)
        states: list[torch.Tensor] = []
        for i in range(start, stop):
            h = self.family.run_layer(dec.layers[i], h, masks.for_layer(self.flags[i]), rope, pos)
            if keep_states:
                states.append(h)
        return h, states

    def _from_prefix_cache(
        self, dec: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[int, torch.Tensor | None]:
        """(p, states after the frozen prefix) when the cache is on and applies here, else (0, None)."""
        p = self.prefix.layers
        modules = [dec.embed_tokens, *list(dec.layers)[:p]]
        params = [q for m in modules for q in m.parameters()]
        if not self.prefix.usable(params, modules):
            return 0, None
        store = self.prefix.store(params, modules[0], modules[1:], dec.config._attn_implementation,
                                  input_ids.device.type)

        def compute(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self._layers(dec, self.family.embed(dec, ids), mask, 0, p)[0]  # (M,S,H)

        return p, self.prefix.states(store, input_ids, attention_mask, compute)


class SentenceEncoderModule(nn.Module):
    """input_ids (B,S), attention_mask (B,S)[, span_mask (B,S)] → sentence embeddings (B,H)."""

    def __init__(self, backbone: BellmBackbone, pooling: str, normalize: bool = False):
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.normalize = normalize

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        span_mask: torch.Tensor | None = None,
        chunks: Sequence[tuple[torch.Tensor, int]] | None = None,
    ) -> torch.Tensor:
        """`chunks` (training): (rows, width) groups of a right-padded batch, each run on its first `width`
        columns (`bellm.tokenize.length_chunks`); the embeddings are those of the whole batch, in its order, since
        no embedding depends on padding. One call, so a DDP-wrapped module sees one forward."""
        if chunks is None:
            return self._embed(input_ids, attention_mask, span_mask)
        spans = [None if span_mask is None else span_mask[rows, :w] for rows, w in chunks]
        parts = [self._embed(input_ids[rows, :w], attention_mask[rows, :w], span)
                 for (rows, w), span in zip(chunks, spans, strict=True)]  # each (b_c,H)
        order = torch.cat([rows for rows, _ in chunks])  # (B,)
        return torch.cat(parts)[torch.argsort(order)]  # (B,H), rows back in the batch's order

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, span_mask: torch.Tensor | None
    ) -> torch.Tensor:
        h = self.backbone(input_ids, attention_mask)  # (B,S,H)
        emb = pool(h, attention_mask, self.pooling, span_mask)  # (B,H)
        return l2_normalize(emb) if self.normalize else emb
