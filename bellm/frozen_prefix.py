"""Frozen-prefix cache: a sentence's hidden states after the bottom, frozen layers, computed once and shared by
every trial of a sweep or ablation that shares those layers.

Why: the trials of a sweep (k, pooling, seed, lr, loss weights, ...) train LoRA on the top `lora.layers` of
one base model, so the embeddings and every causal layer below the first adapted one compute the same states
for a sentence in every trial, in training and in evaluation. With the embedded recipe (28 layers, LoRA on the
top 8) that is 20 of the 28 layers of every forward pass.

Correctness does not rest on the caller. A store is keyed by the sha256 of the prefix's weights (embedding
table and layers, LoRA weights included, in their dtype), the prefix length, the attention implementation and
the autocast state; a backbone reads from one only when its prefix layers are causal, dropout-free and receive
no gradient. A sentence's states are stored for its real tokens only, (T,H), and its positions come from the
mask, so they do not depend on the padding of the batch they were computed in: the cached path equals the
direct one up to float rounding of differently shaped GEMMs (tests/core/test_frozen_prefix.py bounds it).

Off by default (a single run sees most sentences once); `enable(max_gb)` turns it on for the process (sweeps
and ablations do, with `bellm.config.PREFIX_CACHE_GB`).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

class PrefixStore:
    """Real-token states (T,H) after the prefix of one set of weights, by the sentence's token ids."""

    def __init__(self) -> None:
        self.rows: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0


class _Registry:
    """The process's stores, least recently used first, under one byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.stores: OrderedDict[str, PrefixStore] = OrderedDict()

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.stores.values())

    def store(self, key: str) -> PrefixStore:
        if key not in self.stores:
            self.stores[key] = PrefixStore()
        self.stores.move_to_end(key)
        return self.stores[key]

    def make_room(self, needed: int, keep: PrefixStore) -> bool:
        """Drop least recently used stores (never `keep`) until `needed` more bytes fit; False if they cannot."""
        while self.bytes + needed > self.max_bytes:
            victim = next((k for k, s in self.stores.items() if s is not keep), None)
            if victim is None:
                return False
            log.info("frozen-prefix cache: dropping an older model's store (%d MB)", self.stores[victim].bytes >> 20)
            del self.stores[victim]
        return True


_REGISTRY: _Registry | None = None


def enable(max_gb: float) -> None:
    """Turn the cache on for this process (0 turns it off). Idempotent: stores survive across trials."""
    global _REGISTRY
    if max_gb <= 0:
        _REGISTRY = None
    elif _REGISTRY is None:
        _REGISTRY = _Registry(int(max_gb * 2**30))
    else:
        _REGISTRY.max_bytes = int(max_gb * 2**30)


def disable() -> None:
    enable(0)


def stats() -> dict[str, int]:
    """Hits, misses and bytes over the process's stores (for logs and tests)."""
    stores = list(_REGISTRY.stores.values()) if _REGISTRY is not None else []
    return {
        "stores": len(stores),
        "sentences": sum(len(s.rows) for s in stores),
        "bytes": sum(s.bytes for s in stores),
        "hits": sum(s.hits for s in stores),
        "misses": sum(s.misses for s in stores),
    }


def first_adapted_layer(layers: nn.ModuleList) -> int:
    """Index of the lowest layer holding a LoRA module (len(layers) if none): the prefix must stop below it."""
    for i, layer in enumerate(layers):
        if any(hasattr(m, "lora_A") for m in layer.modules()):
            return i
    return len(layers)


def _has_dropout(modules: list[nn.Module]) -> bool:
    for mod in modules:
        for m in mod.modules():
            if isinstance(m, nn.Dropout) and m.p > 0:
                return True
            if getattr(m, "attention_dropout", 0) not in (0, 0.0, None):
                return True
    return False


def weights_key(embed: nn.Module, layers: list[nn.Module], extra: str) -> str:
    """sha256 over the prefix's tensors (names, dtypes, shapes, bytes) and `extra` (p, attention, autocast)."""
    h = hashlib.sha256(extra.encode())
    for prefix, mod in [("embed", embed)] + [(f"layer{i}", m) for i, m in enumerate(layers)]:
        for name, t in sorted(mod.state_dict(keep_vars=False).items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{prefix}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
            if t.numel():
                h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


class FrozenPrefix:
    """A backbone's view of the cache: which store holds its prefix states, rechecked when weights change."""

    def __init__(self, layers: int) -> None:
        self.layers = layers
        self._key: str | None = None
        self._versions: tuple[int, ...] | None = None

    def usable(self, params: list[torch.Tensor], modules: list[nn.Module]) -> bool:
        """Only under gradient-free prefixes (a cached state carries no graph) and without dropout there."""
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        if _REGISTRY is None or self.layers <= 0 or tracing:
            return False
        if torch.is_grad_enabled() and any(p.requires_grad for p in params):
            return False
        return not (any(m.training for m in modules) and _has_dropout(modules))

    def store(
        self, params: list[torch.Tensor], embed: nn.Module, layers: list[nn.Module], attn: str, device_type: str
    ) -> PrefixStore:
        """The store of these weights (`params`: the prefix's parameters, to notice in-place edits)."""
        assert _REGISTRY is not None
        versions = tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)
        on = torch.is_autocast_enabled(device_type)
        autocast = str(torch.get_autocast_dtype(device_type)) if on else "off"
        extra = f"p={self.layers};attn={attn};device={device_type};autocast={autocast}"
        if self._key is None or versions != self._versions or not self._key.endswith(extra):
            self._key = weights_key(embed, layers, extra) + "|" + extra
            self._versions = versions
        return _REGISTRY.store(self._key)

    def states(
        self,
        store: PrefixStore,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """(B,S,H) states after the prefix: stored rows reused, the others computed (`compute(ids, mask)`
        on those rows only) and stored. Pad positions are zero: no real token attends to them."""
        assert _REGISTRY is not None
        real = attention_mask.bool()  # (B,S)
        keys = [input_ids[b][real[b]].cpu().numpy().tobytes() for b in range(input_ids.shape[0])]
        missing = [b for b, k in enumerate(keys) if k not in store.rows]
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            idx = torch.tensor(missing, device=input_ids.device)
            with torch.no_grad():
                h = compute(input_ids[idx], attention_mask[idx])  # (M,S,H)
            for j, b in enumerate(missing):
                row = h[j][real[b]].detach().to("cpu", copy=True)  # (T,H)
                fresh[b] = row
                if keys[b] not in store.rows and _REGISTRY.make_room(row.nbytes, store):
                    store.rows[keys[b]] = row
                    store.bytes += row.nbytes
        store.hits += len(keys) - len(missing)
        store.misses += len(missing)
        first = fresh[missing[0]] if missing else store.rows[keys[0]]
        out = torch.zeros(*input_ids.shape, first.shape[-1], dtype=first.dtype, device=input_ids.device)  # (B,S,H)
        for b, k in enumerate(keys):
            out[b][real[b]] = (fresh[b] if b in fresh else store.rows[k]).to(input_ids.device)
        return out
