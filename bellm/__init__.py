"""bellm: decoder LLM → BeLLM sentence encoder (last-k bidirectional layers), trained, gated, exported.

Heavy imports (torch, transformers) are lazy so that `bellm.runtime` stays torch-free.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "bellm.models",
    "resolve_source": "bellm.models",
    "load_encoder": "bellm.encoder",
    "Encoder": "bellm.encoder",
    "EncoderConfig": "bellm.config",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in {"config", "data"}:
        import importlib

        return importlib.import_module(f"bellm.{name}")
    raise AttributeError(f"module 'bellm' has no attribute {name!r}")
