"""bench/gpu_kit.py: pack → parts ≤ the limit, each with the manifest → assemble (sha256 verified) round trip on
small fake files; a corrupt or missing part unpacks nothing."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("gpu_kit", ROOT / "bench" / "gpu_kit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_inputs(tmp: Path) -> tuple[Path, Path, Path, Path]:
    import os

    gguf = tmp / "m.gguf"
    gguf.write_bytes(os.urandom(50_000))  # incompressible: several parts
    adapter = tmp / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(3000))
    wheel = tmp / "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("onnxruntime/__init__.py", "__version__ = '1.31.1'\n")
        z.writestr("onnxruntime/capi/onnxruntime_pybind11_state.so", b"\x7fELF pybind" * 100)
        z.writestr("onnxruntime/capi/libonnxruntime_providers_cuda.so", b"\x7fELF cuda" * 100)
        z.writestr("onnxruntime/capi/libonnxruntime_providers_tensorrt.so", b"\x7fELF trt" * 100)
        z.writestr("onnxruntime/capi/libonnxruntime.so.1.31.1", b"\x7fELF capi" * 100)
        z.writestr("onnxruntime_gpu-1.31.1.dist-info/METADATA", "Name: onnxruntime-gpu\n")
    pkg = tmp / "gguf"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    return gguf, adapter, wheel, pkg


@pytest.mark.parametrize("codec", ["xz", "zstd"])
def test_pack_assemble_round_trip(kit, tmp_path: Path, codec: str) -> None:
    import shutil

    if codec == "zstd" and not shutil.which("zstd"):
        pytest.skip("no zstd binary")
    gguf, adapter, wheel, pkg = fake_inputs(tmp_path)
    m = kit.pack(tmp_path / "parts", gguf, adapter, wheel, part_bytes=20_000, codec=codec, extra_site=[pkg])
    assert len(m["parts"]) >= 3 and all(p["bytes"] <= 20_000 for p in m["parts"])
    for p in m["parts"]:  # every part directory is self-describing (carried alone, one per call)
        assert json.loads((tmp_path / "parts" / p["dir"] / "kit.json").read_text())["sha256"] == m["sha256"]
    assert sorted(m["contents"]["wheel"]["dropped"]) == ["onnxruntime/capi/libonnxruntime.so.1.31.1",
                                                         "onnxruntime/capi/libonnxruntime_providers_tensorrt.so"]
    dest = tmp_path / "dest"
    kit.assemble(tmp_path / "parts", dest)
    assert (dest / "model" / "m.gguf").read_bytes() == gguf.read_bytes()
    assert (dest / "adapter" / "adapter_config.json").read_text() == '{"r": 8}'
    capi = dest / "site" / "onnxruntime" / "capi"
    assert sorted(p.name for p in capi.iterdir()) == ["libonnxruntime_providers_cuda.so",
                                                      "onnxruntime_pybind11_state.so"]
    assert (dest / "site" / "gguf" / "__init__.py").read_text() == "X = 1\n"


def test_corrupt_or_missing_part_unpacks_nothing(kit, tmp_path: Path) -> None:
    gguf, adapter, wheel, _ = fake_inputs(tmp_path)
    m = kit.pack(tmp_path / "parts", gguf, None, None, part_bytes=20_000, codec="xz")
    second = tmp_path / "parts" / m["parts"][1]["dir"] / m["parts"][1]["file"]
    data = bytearray(second.read_bytes())
    data[10] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(kit.KitError, match="sha256 mismatch"):
        kit.assemble(tmp_path / "parts", tmp_path / "dest")
    assert not (tmp_path / "dest" / "model").exists()
    second.unlink()
    with pytest.raises(kit.KitError, match="parts not here yet"):
        kit.assemble(tmp_path / "parts", tmp_path / "dest2")
