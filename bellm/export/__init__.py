"""ONNX export of BeLLM encoders: trace, rewrite attention, check the graph, gate, publish.

Modules: `trace` (torch → ONNX IR), `rewrite` (attention causality / op choice), `check` (graph checker),
`variants` (int8 / fp16), `parity` and `invariance` (gates), `card` (bellm.json, README), `api` (`export_encoder`).
`check_graph` needs no torch; the names below are imported lazily so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export_encoder": "bellm.export.api",
    "ExportResult": "bellm.export.api",
    "check_graph": "bellm.export.check",
    "GraphCheckError": "bellm.export.check",
    "GraphReport": "bellm.export.check",
    "ParityError": "bellm.export.parity",
    "InvarianceError": "bellm.export.invariance",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bellm.export' has no attribute {name!r}")
