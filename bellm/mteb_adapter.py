"""`MtebEncoder`: any bellm encoder (torch, ONNX runtime, MiniLM baseline) behind mteb's model protocol.

mteb 2.x calls `encode(inputs, *, task_metadata, hf_split, hf_subset, prompt_type=None, **kwargs)` with a
DataLoader whose batches are dicts holding a `"text"` list, then scores with `similarity` /
`similarity_pairwise`, and names results after `mteb_model_meta`. mteb 1.x calls
`encode(sentences: list[str], task_name=..., prompt_type=..., **kwargs)`. This adapter accepts both, and
needs no mteb import itself (so it is testable without mteb).

A model name and revision must reach mteb's result cache, or two different bellm models would share a
cache entry ("no_model_name_available") and the second would silently get the first one's scores; the
revision is the encoder fingerprint, which changes with every adapter/config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def _texts(inputs: Any) -> list[str]:
    """Flatten mteb inputs: a str, a list of str, or an iterable of batches `{"text": [...]}`."""
    if isinstance(inputs, str):
        return [inputs]
    out: list[str] = []
    for item in inputs if isinstance(inputs, Iterable) else [inputs]:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping) and "text" in item:
            batch = item["text"]
            out.extend([batch] if isinstance(batch, str) else list(batch))
        else:
            raise TypeError(f"cannot encode an input of type {type(item).__name__}: expected str or a batch "
                            "dict with a 'text' list (mteb text tasks only)")
    return out


def _unit(x: Any) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    a = a[None, :] if a.ndim == 1 else a
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n > 0, n, 1.0)


class MtebEncoder:
    """Wraps an object with `.encode(texts, batch_size=...)` and `.fingerprint` for `mteb.evaluate`."""

    def __init__(self, encoder: Any, model_name: str | None = None, revision: str | None = None,
                 batch_size: int = 32) -> None:
        self.encoder = encoder
        fp = str(getattr(encoder, "fingerprint", "") or "")
        self.model_name = model_name or f"bellm/{fp or type(encoder).__name__}"
        self.revision = revision or fp or None
        self.batch_size = batch_size
        self._meta: Any = None

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str | None = None,
               hf_subset: str | None = None, prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        """(N, dim) float32 L2-normalised embeddings of the texts in `inputs`, in order.

        Prompts are bellm's own (the encoder's prompt template); mteb's prompt_type is ignored because a
        BeLLM encoder is symmetric.
        """
        texts = _texts(inputs)
        batch_size = int(kwargs.get("batch_size") or self.batch_size)
        if not texts:
            dim = getattr(self.encoder, "dim", 0)
            return np.zeros((0, int(dim)), dtype=np.float32)
        return np.asarray(self.encoder.encode(texts, batch_size=batch_size), dtype=np.float32)

    def similarity(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Cosine similarity matrix (n1, n2): the metric bellm trains and reports."""
        return _unit(embeddings1) @ _unit(embeddings2).T

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any) -> np.ndarray:
        """Cosine similarity of corresponding rows (n,)."""
        return np.einsum("ij,ij->i", _unit(embeddings1), _unit(embeddings2))

    @property
    def mteb_model_meta(self) -> Any:
        """An `mteb.ModelMeta` naming this model (None when mteb is not installed or refuses the fields)."""
        if self._meta is None:
            self._meta = _model_meta(self)
        return self._meta

    @mteb_model_meta.setter
    def mteb_model_meta(self, value: Any) -> None:
        self._meta = value


def _model_meta(adapter: MtebEncoder) -> Any:
    try:
        from mteb import ModelMeta
    except ImportError:
        return None
    desc = getattr(adapter.encoder, "describe", lambda: {})()
    known: dict[str, Any] = {
        "name": adapter.model_name, "revision": adapter.revision, "loader": None, "release_date": None,
        "languages": ["eng-Latn"], "framework": ["PyTorch"], "similarity_fn_name": "cosine",
        "embed_dim": desc.get("dim"), "max_tokens": desc.get("max_length"), "open_weights": True,
        "use_instructions": False, "public_training_code": None, "public_training_data": None,
        "training_datasets": None, "n_parameters": None, "memory_usage_mb": None, "license": None,
        "reference": None, "modalities": ["text"],
    }
    fields: Mapping[str, Any] = getattr(ModelMeta, "model_fields", {})
    args = {k: v for k, v in known.items() if not fields or k in fields}
    for name, info in fields.items():
        if name not in args and getattr(info, "is_required", lambda: False)():
            args[name] = None
    try:
        return ModelMeta(**args)
    except Exception as e:  # noqa: BLE001 - mteb's schema varies across versions; degrade, don't break
        log.warning("could not build mteb.ModelMeta (%s); set adapter.mteb_model_meta yourself", e)
        return None


def as_mteb_model(encoder: Any, model_name: str | None = None, revision: str | None = None,
                  batch_size: int = 32) -> MtebEncoder:
    """`mteb.evaluate(as_mteb_model(encoder), tasks)`: see README "Evaluating with MTEB"."""
    return MtebEncoder(encoder, model_name, revision, batch_size)
