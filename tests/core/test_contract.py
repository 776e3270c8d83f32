"""The `bellm.json` contract: one writer, one reader, schema versions, and full validation of an export at load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from export_helpers import shared_export

from bellm.contract import (
    SCHEMA_VERSION,
    AdapterDescriptor,
    DescriptorError,
    ExportDescriptor,
    read_adapter_descriptor,
    read_descriptor,
    read_export_descriptor,
    write_descriptor,
)
from bellm.runtime import ExportFormatError, OnnxEncoder

SHA = "0" * 64


def adapter_desc(**over) -> AdapterDescriptor:
    kw = dict(base_model="smollm2-135m", base_model_sha256=SHA, bidirectional_layers=2, num_layers=4,
              pooling="mean", prompt='Say "{text}":', max_length=32, dim=64, provenance={"steps": 3, "lora": {"r": 4}})
    return AdapterDescriptor(**{**kw, **over})


def test_adapter_round_trip(tmp_path: Path) -> None:
    desc = adapter_desc()
    write_descriptor(tmp_path, desc)
    data = json.loads((tmp_path / "bellm.json").read_text())
    assert data["kind"] == "bellm-adapter" and data["schema_version"] == SCHEMA_VERSION
    assert data["steps"] == 3 and data["bidirectional_layers"] == 2  # flat keys, as consumers read them
    back = read_adapter_descriptor(tmp_path)
    assert back == desc
    assert read_descriptor(tmp_path / "bellm.json") == desc


def test_writer_refuses_what_the_reader_would(tmp_path: Path) -> None:
    with pytest.raises(DescriptorError, match="bidirectional_layers"):
        write_descriptor(tmp_path, adapter_desc(bidirectional_layers=5))
    with pytest.raises(DescriptorError, match="prompt"):
        write_descriptor(tmp_path, adapter_desc(prompt="{{text}}"))
    assert not (tmp_path / "bellm.json").exists()


@pytest.mark.parametrize("version, word", [(1, "older"), (SCHEMA_VERSION + 1, "newer")])
def test_other_schema_versions_are_refused(tmp_path: Path, version: int, word: str) -> None:
    write_descriptor(tmp_path, adapter_desc())
    data = json.loads((tmp_path / "bellm.json").read_text())
    data["schema_version"] = version
    (tmp_path / "bellm.json").write_text(json.dumps(data))
    with pytest.raises(DescriptorError, match=f"schema_version: schema version {version} is {word}"):
        read_adapter_descriptor(tmp_path)


def test_schema_1_files_are_recognised_and_refused(tmp_path: Path) -> None:
    (tmp_path / "bellm.json").write_text(json.dumps({"format": "bellm-adapter/1", "pooling": "last"}))
    with pytest.raises(DescriptorError, match="schema version 1 is older.*re-train or re-export"):
        read_descriptor(tmp_path)


def test_kind_is_checked(tmp_path: Path) -> None:
    write_descriptor(tmp_path, adapter_desc())
    with pytest.raises(DescriptorError, match="expected bellm-onnx"):
        read_export_descriptor(tmp_path)


# ---- a real export directory, tampered with (issue #15 item 11) ------------------------------------------


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return shared_export(str(tiny_model_dir), str(tmp_path_factory.getbasetemp()))[0]


@pytest.fixture
def variant(tmp_path: Path, export_dir: Path) -> Path:
    d = tmp_path / "fp32"
    shutil.copytree(export_dir / "fp32", d)
    return d


def _edit(d: Path, **changes) -> None:
    data = json.loads((d / "bellm.json").read_text())
    data.update(changes)
    (d / "bellm.json").write_text(json.dumps(data))


def test_export_descriptor_reads_back(variant: Path) -> None:
    desc = read_export_descriptor(variant)
    assert isinstance(desc, ExportDescriptor) and desc.variant == "fp32" and desc.opset >= 23
    assert isinstance(desc.ir_version, int) and desc.ir_version >= 10  # recorded beside the opset
    assert desc.truncation_rule == "text-cut-reencode/1"
    assert "cuts" in json.loads((variant / "bellm.json").read_text())["truncation"]  # stated, language-neutral


@pytest.mark.parametrize("model_file", ["/etc/passwd", "../../model.onnx", "sub/../../x.onnx", "C:\\m.onnx", ""])
def test_model_file_must_stay_inside(variant: Path, tmp_path: Path, model_file: str) -> None:
    outside = tmp_path / "model.onnx"
    shutil.copy(variant / "model.onnx", outside)  # a loadable model outside the directory
    _edit(variant, model_file=model_file)
    with pytest.raises(ExportFormatError, match="model_file: .*inside the export directory"):
        OnnxEncoder(variant, verify_model=False)


def test_model_sha256_is_verified(variant: Path) -> None:
    _edit(variant, model_sha256="f" * 64)
    with pytest.raises(ExportFormatError, match="model_sha256: model.onnx has sha256"):
        OnnxEncoder(variant)
    assert OnnxEncoder(variant, verify_model=False).encode("x").shape == (64,)  # explicitly skipped


def test_non_utf8_descriptor(variant: Path) -> None:
    (variant / "bellm.json").write_bytes(b'{"prompt": "\xff{text}"}')
    with pytest.raises(ExportFormatError, match=r"fp32/bellm.json: not UTF-8"):
        OnnxEncoder(variant)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("dim", "64", "dim: must be an integer"),
        ("max_length", 12.5, "max_length: must be an integer"),
        ("bidirectional_layers", True, "bidirectional_layers: must be an integer"),
        ("prompt", ["{text}"], "prompt: must be a str"),
        ("prompt", "{{text}}", "prompt: .*exactly one {text} field"),
        ("prompt", "{text} {x}", "prompt: .*stray braces"),
        ("pooling", "max", "pooling: unknown pooling"),
        ("inputs", ["input_ids"], "inputs: must be"),
        ("dim", 32, "dim: 32, but the model outputs 64"),
        ("num_layers", 1, "bidirectional_layers: must be in \\[0, num_layers=1\\]"),
    ],
)
def test_bad_fields_fail_at_load_naming_the_field(variant: Path, field: str, value, message: str) -> None:
    _edit(variant, **{field: value})
    with pytest.raises(ExportFormatError, match=message) as info:
        OnnxEncoder(variant, verify_model=False)
    assert str(variant / "bellm.json") in str(info.value)


def test_not_an_object(variant: Path) -> None:
    (variant / "bellm.json").write_text("[1, 2]")
    with pytest.raises(ExportFormatError, match="must hold a JSON object"):
        OnnxEncoder(variant)
    (variant / "bellm.json").write_text('{"kind": "bellm-onnx",\n "x": }')
    with pytest.raises(ExportFormatError, match="line 2"):
        OnnxEncoder(variant)
