"""The serve layer's shared fixtures: one tiny fp32 export per worker and its torch-free runtime."""

from __future__ import annotations

from pathlib import Path

import pytest
from export_helpers import shared_export

from bellm.runtime import OnnxEncoder


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return shared_export(str(tiny_model_dir), str(tmp_path_factory.getbasetemp()))[0]


@pytest.fixture(scope="module")
def rt(export_dir: Path) -> OnnxEncoder:
    return OnnxEncoder(export_dir / "fp32", providers=["CPUExecutionProvider"])
