"""The artifact contract: the two `bellm.json` descriptors, their one writer and their one reader.

A trained adapter directory and every exported ONNX variant directory carry a `bellm.json`. Both are
written and read only here — by training, the encoder, the exporter, the graph checker and
`bellm.runtime` — as typed, validated records:

* `AdapterDescriptor` (kind `bellm-adapter`): how to rebuild the encoder the adapter was trained for
  (base model + sha256, k, kept layers, pooling, prompt template, max length) and what produced it;
* `ExportDescriptor` (kind `bellm-onnx`): what an outside consumer needs to call `model.onnx` with only
  a tokenizer and an ONNX runtime: the prompt, the truncation rule (language-neutral, `TRUNCATION`),
  inputs/outputs, file names and hashes, opset and ONNX IR version.

Both share the encoder fields (`EncoderFields`). Each file records `kind` and `schema_version`; a file of
another kind or version is refused with a clear error (`DescriptorError`, naming file and field), as is
any malformed field. Imports only the standard library (and `bellm.prompts`/`bellm.io`, both
stdlib-only), so the torch-free runtime can use it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from glob import escape as glob_escape
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from bellm.errors import InputError
from bellm.io import sha256_file, write_json_atomic
from bellm.prompts import PromptError, split_template

DESCRIPTOR_FILE = "bellm.json"
SCHEMA_VERSION = 2
ADAPTER_KIND = "bellm-adapter"
EXPORT_KIND = "bellm-onnx"
KINDS = (ADAPTER_KIND, EXPORT_KIND)

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_NAME = "sentence_embedding"
INPUT_NAMES: tuple[str, ...] = ("input_ids", "attention_mask")
SPAN_INPUT = "span_mask"

# Pooling modes are part of the contract (a consumer must know whether to feed `span_mask`); their
# implementations live in `bellm.pooling`, which checks it implements exactly these.
# `last_mean_span` (hybrid): the last token's state and the mean over the sentence's own tokens, each
# L2-normalised, summed (then normalised with the rest): the causal read-out plus what the bidirectional
# top layers spread over the span.
POOLINGS: tuple[str, ...] = ("last", "mean", "mean_span", "last_mean_span")
SPAN_POOLINGS: tuple[str, ...] = ("mean_span", "last_mean_span")
VARIANTS: tuple[str, ...] = ("fp32", "fp16", "int8")
ATTENTION_OPS: tuple[str, ...] = ("onnx", "ms_mha")
MIN_OPSET = 23  # fused Attention / RotaryEmbedding / RMSNormalization

TRUNCATION_RULE = "text-cut-reencode/1"
TRUNCATION = (
    "Let prefix and suffix be the prompt before and after {text}, and offsets Unicode code-point offsets into "
    "the prompted string. Encode prefix+text+suffix (no extra special tokens beyond what tokenizer.json adds). "
    "If it has at most max_length tokens, use it. Otherwise let [c0,c1) be the text's characters and cuts the "
    "sorted distinct token end offsets e with c0<e<c1; start with m = len(cuts)+1-(tokens-max_length); if that "
    "is below 1 and cuts is not empty (several tokens can end at one character, as in byte-level BPE), start "
    "instead with the largest m>=1 for which at least tokens-max_length-1 token end offsets e satisfy "
    "cuts[m-1]<e<c1, or m=1 if none does. Then, while prefix + text[:cuts[m-1]-c0] + suffix encodes to more "
    "than max_length tokens, decrease m; encode "
    "that string and use its ids. m<1 means the prompt does not fit. The prompt is never cut: every prompt "
    "character is present, and tokens are those of a normal encoding of the shortened prompted text."
)
PADDING = (
    "Pad with any id and attention_mask 0, on either side: padded positions are masked out of attention and "
    "pooling, and position ids are counted over real tokens, so results are identical."
)
SPAN_NOTE = "1 on the tokens overlapping the text's characters [c0,c1) of the (possibly shortened) prompted string"
PROVIDERS = {"fp32": "CPU or CUDA", "fp16": "CUDA (also runs on ORT CPU, slowly)", "int8": "CPU"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DescriptorError(InputError):
    """A `bellm.json` that cannot be used: unreadable, another kind or schema version, or a bad field."""

    def __init__(self, path: str | os.PathLike[str], reason: str | None = None, field_name: str | None = None) -> None:
        if reason is None:  # a plain message (no file to name)
            self.path, self.field, self.reason = "", None, str(path)
            super().__init__(str(path))
            return
        self.path, self.field, self.reason = str(path), field_name, reason
        super().__init__(f"{path}: {field_name + ': ' if field_name else ''}{reason}")


# ------------------------------------------------------------------------------------------ the records


@dataclass(frozen=True, kw_only=True)
class EncoderFields:
    """What determines the embeddings; shared by both descriptors (and `Encoder.describe()`)."""

    base_model: str | None
    base_model_sha256: str | None
    adapter_sha256: str | None = None
    bidirectional_layers: int  # k: the last k of num_layers layers attend bidirectionally
    num_layers: int  # decoder layers the encoder runs (after keep_layers)
    keep_layers: int | None = None  # layers kept from the bottom of the base model (None: all)
    pooling: str
    prompt: str  # the template, with one {text} field
    max_length: int  # tokens per prompted text, prompt included
    dim: int

    def encoder_fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(EncoderFields)}


@dataclass(frozen=True, kw_only=True)
class AdapterDescriptor(EncoderFields):
    """`bellm.json` of a trained LoRA adapter directory (beside adapter_config.json / adapter_model.*)."""

    KIND: ClassVar[str] = ADAPTER_KIND
    base_model_path: str | None = None
    base_model_kind: str | None = None
    prompt_name: str | None = None  # the name the prompt was given by, if any (informative)
    bellm_version: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)  # lora, loss, train, data, seed, steps, ...

    def to_dict(self) -> dict[str, Any]:
        out = _header(self.KIND)
        out.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "provenance"})
        out.update({k: v for k, v in self.provenance.items() if k not in out})
        return out


@dataclass(frozen=True, kw_only=True)
class ExportDescriptor(EncoderFields):
    """`bellm.json` of one exported ONNX variant directory: the consumer contract."""

    KIND: ClassVar[str] = EXPORT_KIND
    variant: str
    opset: int
    ir_version: int | None = None  # ONNX IR version of model.onnx
    attention_op: str = "onnx"
    model_file: str = MODEL_FILE
    model_sha256: str | None = None
    tokenizer_file: str = TOKENIZER_FILE
    inputs: tuple[str, ...] = INPUT_NAMES
    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    normalized: bool = True
    truncation_rule: str = TRUNCATION_RULE
    exported_with: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] | None = None  # int8: how it was quantised (method, scales, smoothing)

    def to_dict(self) -> dict[str, Any]:
        out = _header(self.KIND)
        out.update({f.name: getattr(self, f.name) for f in fields(self)})
        out["inputs"], out["outputs"] = list(self.inputs), list(self.outputs)
        if self.precision is None:
            del out["precision"]
        # Notes for people and other languages (derived, never read back).
        out["input_shapes"] = {name: "int64 (batch, seq)" for name in self.inputs}
        out["output_shape"] = f"float32 (batch, {self.dim})"
        out["padding"] = PADDING
        out["truncation"] = TRUNCATION
        out["span_mask"] = SPAN_NOTE if SPAN_INPUT in self.inputs else None
        out["providers"] = PROVIDERS.get(self.variant)
        return out

    def model_path(self, directory: str | os.PathLike[str]) -> Path:
        return Path(directory) / self.model_file

    def tokenizer_path(self, directory: str | os.PathLike[str]) -> Path:
        return Path(directory) / self.tokenizer_file


def inputs_for(pooling: str) -> tuple[str, ...]:
    """Graph inputs: `span_mask` only for poolings that need the sentence span (it cannot be derived in-graph)."""
    return (*INPUT_NAMES, SPAN_INPUT) if pooling in SPAN_POOLINGS else INPUT_NAMES


Descriptor = AdapterDescriptor | ExportDescriptor


def _header(kind: str) -> dict[str, Any]:
    # `format` is the schema-1 spelling, kept so older readers give their own clear error.
    return {"kind": kind, "schema_version": SCHEMA_VERSION, "format": f"{kind}/{SCHEMA_VERSION}"}


# ------------------------------------------------------------------------------------------ the writer


def write_descriptor(directory: str | os.PathLike[str], desc: Descriptor) -> Path:
    """Validate `desc` (as the reader would) and write `directory/bellm.json` atomically."""
    path = Path(directory) / DESCRIPTOR_FILE
    data = desc.to_dict()
    _validate(type(desc), data, path)
    write_json_atomic(path, data)
    return path


# ------------------------------------------------------------------------------------------ the reader


def load_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in `path`, or `DescriptorError` saying exactly what is wrong (file, line)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DescriptorError(path, "missing (not a bellm adapter or export directory)") from None
    except OSError as e:
        raise DescriptorError(path, f"cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DescriptorError(path, f"not UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DescriptorError(path, f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise DescriptorError(path, f"must hold a JSON object, not {type(data).__name__}")
    return data


def _path_of(where: str | os.PathLike[str]) -> Path:
    p = Path(where)
    return p if p.name == DESCRIPTOR_FILE and not p.is_dir() else p / DESCRIPTOR_FILE


def descriptor_kind(data: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The kind of a parsed descriptor, after checking its schema version (clear error otherwise)."""
    kind, version = data.get("kind"), data.get("schema_version")
    if kind is None and isinstance(data.get("format"), str) and "/" in data["format"]:
        kind, _, v = data["format"].rpartition("/")  # schema 1 had only "format": "<kind>/1"
        version = int(v) if v.isdigit() else v
    if kind not in KINDS:
        raise DescriptorError(path, f"unknown kind {kind!r}; expected one of {list(KINDS)}", "kind")
    if version != SCHEMA_VERSION:
        age = "older" if isinstance(version, int) and version < SCHEMA_VERSION else "newer or unknown"
        fix = "re-train or re-export it with this bellm" if age == "older" else "upgrade bellm to read it"
        raise DescriptorError(
            path, f"schema version {version!r} is {age}; this bellm reads version {SCHEMA_VERSION} ({fix})",
            "schema_version",
        )
    return kind


def read_descriptor(where: str | os.PathLike[str]) -> Descriptor:
    """The descriptor in a directory (or a `bellm.json` path), of whichever kind it is."""
    path = _path_of(where)
    data = load_json(path)
    cls = AdapterDescriptor if descriptor_kind(data, path) == ADAPTER_KIND else ExportDescriptor
    return _build(cls, data, path)


def read_adapter_descriptor(where: str | os.PathLike[str]) -> AdapterDescriptor:
    """The `bellm-adapter` descriptor of an adapter directory; any other kind is an error."""
    desc = read_descriptor(where)
    if not isinstance(desc, AdapterDescriptor):
        raise DescriptorError(_path_of(where), f"is a {desc.KIND} descriptor, expected {ADAPTER_KIND}", "kind")
    return desc


def read_export_descriptor(
    where: str | os.PathLike[str], verify_model: bool = True, check_files: bool = True
) -> ExportDescriptor:
    """The `bellm-onnx` descriptor of an export variant directory, fully validated.

    `check_files`: model and tokenizer files exist inside the directory. `verify_model`: the model file's
    sha256 equals `model_sha256` (hashing reads the whole file: skip it when speed matters and the
    directory is trusted).
    """
    path = _path_of(where)
    desc = read_descriptor(path)
    if not isinstance(desc, ExportDescriptor):
        raise DescriptorError(path, f"is a {desc.KIND} descriptor, expected {EXPORT_KIND}", "kind")
    directory = path.parent
    if check_files:
        for name in ("model_file", "tokenizer_file"):
            f = directory / getattr(desc, name)
            if not f.is_file():
                raise DescriptorError(path, f"{getattr(desc, name)!r} is missing from {directory}", name)
            _really_inside(path, name, f)
        model = desc.model_path(directory)
        for f in model.parent.glob(f"{glob_escape(model.name)}?*"):  # external weights (model.onnx.data) too
            _really_inside(path, "model_file", f)
    if verify_model:
        if desc.model_sha256 is None:
            raise DescriptorError(path, "missing, so the model cannot be verified (pass verify_model=False to skip)",
                                  "model_sha256")
        actual = sha256_file(desc.model_path(directory))
        if actual != desc.model_sha256:
            raise DescriptorError(
                path, f"{desc.model_file} has sha256 {actual[:16]}…, the descriptor says {desc.model_sha256[:16]}… "
                "(modified or corrupted model file)", "model_sha256",
            )
    return desc


# ------------------------------------------------------------------------------------------ validation


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_type(path: Path, name: str, value: Any, kind: str) -> None:
    ok = {
        "int": _is_int(value),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "dict": isinstance(value, dict),
        "strlist": isinstance(value, list | tuple) and all(isinstance(x, str) for x in value),
    }[kind]
    if not ok:
        want = {"strlist": "a list of strings", "dict": "an object", "int": "an integer"}.get(kind, f"a {kind}")
        raise DescriptorError(path, f"must be {want}, got {json.dumps(value)[:80]}", name)


def _inside(path: Path, name: str, value: str) -> None:
    """A file name that stays inside the descriptor's directory: relative, no `..`, no drive or root."""
    p = PurePosixPath(value.replace("\\", "/"))
    if not value or p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", value) or value.startswith("~"):
        raise DescriptorError(path, f"{value!r} must be a plain file name inside the export directory", name)


def _really_inside(path: Path, name: str, f: Path) -> None:
    """`_inside` checks names; this checks the real file: no symbolic link (of the file or of a directory on
    the way) may lead out of the descriptor's directory."""
    real, root = f.resolve(), path.parent.resolve()
    if not real.is_relative_to(root):
        raise DescriptorError(path, f"{f.name!r} leads outside the export directory (to {real}) through a symbolic "
                              "link", name)


# (field, type, required) per kind; optional fields may also be null.
_ENCODER_SPEC = [
    ("base_model", "str", False), ("base_model_sha256", "str", False), ("adapter_sha256", "str", False),
    ("bidirectional_layers", "int", True), ("num_layers", "int", True), ("keep_layers", "int", False),
    ("pooling", "str", True), ("prompt", "str", True), ("max_length", "int", True), ("dim", "int", True),
]
_SPEC: dict[type, list[tuple[str, str, bool]]] = {
    AdapterDescriptor: [
        *_ENCODER_SPEC, ("base_model_path", "str", False), ("base_model_kind", "str", False),
        ("prompt_name", "str", False), ("bellm_version", "str", False),
    ],
    ExportDescriptor: [
        *_ENCODER_SPEC, ("variant", "str", True), ("opset", "int", True), ("ir_version", "int", False),
        ("attention_op", "str", True), ("model_file", "str", True), ("model_sha256", "str", False),
        ("tokenizer_file", "str", True), ("inputs", "strlist", True), ("outputs", "strlist", True),
        ("normalized", "bool", True), ("truncation_rule", "str", True), ("exported_with", "dict", False),
        ("precision", "dict", False),
    ],
}


def _validate(cls: type, data: Mapping[str, Any], path: Path) -> None:
    for name, kind, required in _SPEC[cls]:
        if name not in data or data[name] is None:
            if required:
                raise DescriptorError(path, "missing", name)
            continue
        _check_type(path, name, data[name], kind)
    n, k, keep = data["num_layers"], data["bidirectional_layers"], data.get("keep_layers")
    if n < 1:
        raise DescriptorError(path, f"must be >= 1, got {n}", "num_layers")
    if not 0 <= k <= n:
        raise DescriptorError(path, f"must be in [0, num_layers={n}], got {k}", "bidirectional_layers")
    if keep is not None and keep != n:
        raise DescriptorError(path, f"{keep} layers kept but num_layers is {n}", "keep_layers")
    for name in ("max_length", "dim"):
        if data[name] < 1:
            raise DescriptorError(path, f"must be >= 1, got {data[name]}", name)
    if data["pooling"] not in POOLINGS:
        raise DescriptorError(path, f"unknown pooling {data['pooling']!r}; this bellm knows {list(POOLINGS)}",
                              "pooling")
    try:
        split_template(data["prompt"])
    except PromptError as e:
        raise DescriptorError(path, str(e), "prompt") from None
    for name in ("base_model_sha256", "model_sha256"):
        v = data.get(name)
        if isinstance(v, str) and not (_SHA256.fullmatch(v) or v.startswith("hub:")):
            raise DescriptorError(path, f"must be 64 lowercase hex digits, got {v[:80]!r}", name)
    if cls is ExportDescriptor:
        _validate_export(data, path)


def _validate_export(data: Mapping[str, Any], path: Path) -> None:
    for name, allowed in (("variant", VARIANTS), ("attention_op", ATTENTION_OPS)):
        if data[name] not in allowed:
            raise DescriptorError(path, f"{data[name]!r} is not one of {list(allowed)}", name)
    if data["opset"] < MIN_OPSET:
        raise DescriptorError(path, f"must be >= {MIN_OPSET}, got {data['opset']}", "opset")
    if data["truncation_rule"] != TRUNCATION_RULE:
        raise DescriptorError(path, f"{data['truncation_rule']!r} is not a rule this bellm implements "
                              f"({TRUNCATION_RULE})", "truncation_rule")
    for name in ("model_file", "tokenizer_file"):
        _inside(path, name, data[name])
    want = list(inputs_for(data["pooling"]))
    if list(data["inputs"]) != want:
        raise DescriptorError(path, f"must be {want} for pooling {data['pooling']!r}, got {data['inputs']}", "inputs")
    if not data["outputs"]:
        raise DescriptorError(path, "must name the embedding output", "outputs")
    if data["normalized"] is not True:
        raise DescriptorError(path, "bellm exports are L2-normalised in the graph; must be true", "normalized")


def _build(cls: type, data: Mapping[str, Any], path: Path) -> Descriptor:
    _validate(cls, data, path)
    names = {f.name for f in fields(cls)} - {"provenance"}
    kwargs = {n: data[n] for n in names if n in data}
    if cls is ExportDescriptor:
        kwargs["inputs"], kwargs["outputs"] = tuple(data["inputs"]), tuple(data["outputs"])
        kwargs.setdefault("exported_with", {})
        return ExportDescriptor(**kwargs)
    skip = names | {"kind", "schema_version", "format"}
    return AdapterDescriptor(**kwargs, provenance={k: v for k, v in data.items() if k not in skip})


def export_descriptor(
    encoder: Mapping[str, Any] | EncoderFields,
    variant: str,
    attention_op: str,
    opset: int,
    ir_version: int | None,
    model_sha256: str,
    exported_with: Mapping[str, Any],
    precision: Mapping[str, Any] | None = None,
) -> ExportDescriptor:
    """The export descriptor of one variant, from the encoder's fields (`Encoder.describe()`)."""
    enc = encoder.encoder_fields() if isinstance(encoder, EncoderFields) else encoder
    base = {f.name: enc.get(f.name) for f in fields(EncoderFields)}
    return ExportDescriptor(
        **base, variant=variant, opset=opset, ir_version=ir_version, attention_op=attention_op,
        model_sha256=model_sha256, inputs=inputs_for(base["pooling"]), exported_with=dict(exported_with),
        precision=dict(precision) if precision else None,
    )

