"""The single home of attention-mask logic: which layers are bidirectional, and the masks they get.

BeLLM makes the *last* k decoder layers bidirectional. We build two masks once per forward and hand
each layer the right one:

* causal layers (index < L-k): key j visible to query i iff j <= i and j is a real token;
* bidirectional layers (index >= L-k): key j visible iff j is a real token (the padding mask is kept:
  BiLLM's public code drops it there, which lets real tokens attend to pads and makes embeddings
  depend on the batch).

Every query may also see itself, so a padded (or fully padded) row never has an empty softmax and
never produces NaN; real queries never see pad keys, so this cannot leak into real tokens.

With SDPA and no padding we may pass `None` on the CPU (fast kernels); SDPA then falls back to the module's
`is_causal` flag, so `convert_layers` sets it to False on bidirectional layers: without that they
would silently stay causal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bellm.errors import InputError

BidirectionalLayers = int | Literal["all"]


def resolve_k(k: BidirectionalLayers, num_layers: int) -> int:
    """`k` as a number of final layers (`"all"` = every layer), validated against the model."""
    if k == "all":
        return num_layers
    if isinstance(k, str) and k.isdigit():
        k = int(k)
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= num_layers:
        raise InputError(f"bidirectional_layers must be an int in [0, {num_layers}] or 'all', got {k!r}")
    return k


def bidirectional_flags(num_layers: int, k: int) -> list[bool]:
    """flags[i] is True when layer i is bidirectional: exactly the last k layers."""
    return [i >= num_layers - k for i in range(num_layers)]


def attention_modules(decoder: nn.Module) -> list[nn.Module]:
    """The attention module of every decoder layer (the family knows where it lives)."""
    from bellm.families import family_of

    return family_of(decoder.config).attention_modules(decoder)


def convert_layers(decoder: nn.Module, k: int) -> list[bool]:
    """Mark the last k layers' attention as non-causal (`is_causal=False`); the others stay causal."""
    attns = attention_modules(decoder)
    flags = bidirectional_flags(len(attns), k)
    for attn, bidir in zip(attns, flags, strict=True):
        attn.is_causal = not bidir
    return flags


@dataclass(frozen=True)
class LayerMasks:
    """Masks for one forward, in the form the attention implementation wants (or None to skip)."""

    causal: torch.Tensor | None  # (B,1,S,S) bool/additive, or None = use is_causal=True
    bidirectional: torch.Tensor | None  # (B,1,S,S), or None = attend everywhere

    def for_layer(self, bidirectional: bool) -> torch.Tensor | None:
        return self.bidirectional if bidirectional else self.causal


def visibility(attention_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean visibility (B,1,S,S): True where query i may attend to key j."""
    b, s = attention_mask.shape
    real_key = attention_mask.bool()[:, None, None, :]  # (B,1,1,S)
    idx = torch.arange(s, device=attention_mask.device)
    diag = (idx[:, None] == idx[None, :])[None, None]  # (1,1,S,S)
    allowed = real_key.expand(b, 1, s, s)
    if causal:
        allowed = allowed & (idx[None, :] <= idx[:, None])[None, None]
    return allowed | diag


def to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean visibility → additive float mask (0 where visible, dtype-min elsewhere), for eager attention."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    neg = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=mask.device)
    return torch.where(mask, zero, neg)


def build_masks(
    attention_mask: torch.Tensor,
    attn_implementation: str,
    dtype: torch.dtype,
    allow_skip: bool = True,
) -> LayerMasks:
    """Both masks for a batch. `allow_skip` lets SDPA use `None` when nothing is padded (not for export).

    The skip asks the data whether anything is padded, which on an accelerator is a host synchronisation in the
    middle of the forward (and breaks CUDA-graph capture, `bellm.cuda_graphs`), so it is only taken on the CPU,
    where reading the mask costs nothing; elsewhere the masks are always built, on the device."""
    if (allow_skip and attn_implementation == "sdpa" and attention_mask.device.type == "cpu"
            and not torch.jit.is_tracing() and bool(attention_mask.all())):
        return LayerMasks(None, None)
    causal = visibility(attention_mask, causal=True)
    bidir = visibility(attention_mask, causal=False)
    if attn_implementation == "eager":
        return LayerMasks(to_additive(causal, dtype), to_additive(bidir, dtype))
    if attn_implementation != "sdpa":
        raise ValueError(f"attention implementation {attn_implementation!r} is not supported; use 'sdpa' or 'eager'")
    return LayerMasks(causal, bidir)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (B,S), so left padding does not shift RoPE positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_align_order(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,S) gather indices that move each row's real tokens to the front, in order, and its pads after.

    The exported graph applies this first, so every padding layout (left, right, any pad id) reaches the
    kernels as the same layout: real tokens at positions 0..n-1. Float reductions then see the real tokens at
    the same offsets whatever the caller's padding, which keeps low-precision variants (whose activation
    rounding amplifies 1e-7 differences) bit-for-bit batch and padding invariant. Keys are unique, so the
    sort's stability does not matter.
    """
    seq = attention_mask.shape[1]
    pos = torch.arange(seq, device=attention_mask.device).unsqueeze(0)  # (1,S)
    key = (1 - attention_mask.long()) * seq + pos  # (B,S): real tokens first, original order kept
    return torch.argsort(key, dim=1)
