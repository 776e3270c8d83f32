"""`OnnxEncoder`: encode sentences with an exported bellm model, using only numpy, tokenizers and onnxruntime.

An export directory holds `model.onnx`, `tokenizer.json` and `bellm.json` (the contract: prompt, max_length,
pooling, ...). Texts are prompted, tokenised and truncated exactly as in training (`bellm.tokenize`, the same
code the PyTorch encoder uses), deduplicated, batched longest-first, run, and returned in input order.

Input rules (documented, never a crash):
* a single `str` gives a (dim,) vector; a sequence of `str` gives (N, dim); an empty sequence gives (0, dim);
* a non-string item raises `TypeError` naming its index;
* a text longer than `max_length` tokens (with the prompt) is shortened by the contract's truncation rule (the
  text is cut at a token boundary and the whole prompt re-encoded, so the prompt, which last-token pooling
  reads, stays whole); `truncated_count` of the last call says how many were.

`bellm.json` is validated completely when the encoder is built (`bellm.contract.read_export_descriptor`): kind
and schema version, every field's type, file names that stay inside the directory, the model's sha256
(`verify_model=False` skips the hashing), and the graph's inputs, output and width against the descriptor.

Install: `pip install bellm[runtime]` (CPU) or `bellm[runtime-gpu]`. `onnxruntime` and `onnxruntime-gpu`
provide the same module and must not be installed together (uninstall one before installing the other).
This module must never import torch: a test checks it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from bellm.contract import (
    DESCRIPTOR_FILE,
    DescriptorError,
    ExportDescriptor,
    load_json,
    read_export_descriptor,
)
from bellm.errors import InputError
from bellm.tokenize import Encoded, embed_texts, encode_one, load_tokenizer_file

PREFERRED_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
CONTRACT_FILE = DESCRIPTOR_FILE


class ExportFormatError(DescriptorError):
    """The directory is not a usable bellm ONNX export (missing file, bad bellm.json, model hash mismatch)."""


def pick_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """Requested providers (validated), else TensorRT/CUDA/CPU in that order among the available ones."""
    if requested is not None:
        missing = [p for p in requested if p not in available]
        if missing:
            raise InputError(f"execution provider(s) {missing} not available; this onnxruntime has {list(available)}")
        return list(requested)
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or list(available)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the CPU count): the thread count the CPU
    benchmarks measure at. onnxruntime's own default is the *physical* core count, which on VMs that present
    their vCPUs as hyperthreads of fewer cores leaves CPUs idle."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


GPU_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Measured on one H200 (BENCHMARKS.md, ORT CUDA fp16 vs PyTorch bf16): the ONNX `Attention` op is fastest up to
# batch 128, com.microsoft `MultiHeadAttention` (attention_op "ms_mha") at 512.
MS_MHA_FROM_BATCH = 512


def default_variant(found: Sequence[str], providers: Sequence[str]) -> str:
    """The variant to load when none is named: fp16 where a GPU provider will run the session (fp16 agrees with
    fp32 to min cosine 0.999998 and is 3-4.7x PyTorch bf16 there), else fp32 (int8 is opt-in: smaller and on
    VNNI/AMX CPUs faster, at a min cosine of ~0.998)."""
    if "fp16" in found and any(p in GPU_PROVIDERS for p in providers):
        return "fp16"
    return "fp32" if "fp32" in found else sorted(found)[0]


def attention_op_for(batch_size: int) -> str:
    """Which export attention op to build for GPU serving at this batch size (`bellm export --attention-op`)."""
    return "ms_mha" if batch_size >= MS_MHA_FROM_BATCH else "onnx"


def resolve_export_dir(path: str | os.PathLike[str], variant: str | None = None,
                       providers: Sequence[str] | None = None) -> Path:
    """The variant directory holding bellm.json: given directly, via its model.onnx, or under an export root.
    Under a root, no `variant` means `default_variant` for `providers` (None: the providers this onnxruntime
    would pick, `pick_providers`)."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise ExportFormatError(path, "no such export directory")
    if (p / CONTRACT_FILE).is_file():
        if variant is not None:
            try:
                found_variant = load_json(p / CONTRACT_FILE).get("variant")
            except DescriptorError as e:
                raise ExportFormatError(e.path, e.reason, e.field) from None
            if found_variant != variant:
                raise ExportFormatError(p, f"holds variant {found_variant!r}, not {variant!r}")
        return p
    found = sorted(q.parent.name for q in p.glob(f"*/{CONTRACT_FILE}"))
    if not found:
        raise ExportFormatError(p, f"no {CONTRACT_FILE} here or in a variant subdirectory (not a bellm export)")
    if providers is None:
        providers = pick_providers(ort.get_available_providers())
    want = variant or default_variant(found, providers)
    if want not in found:
        raise ExportFormatError(p, f"variant {want!r} not exported; found {found}")
    return p / want


def read_contract(d: Path, verify_model: bool = True) -> ExportDescriptor:
    """The validated export descriptor of a variant directory (`bellm.contract.read_export_descriptor`)."""
    try:
        return read_export_descriptor(d, verify_model=verify_model)
    except ExportFormatError:
        raise
    except DescriptorError as e:
        raise ExportFormatError(e.path, e.reason, e.field) from None


class OnnxEncoder:
    """Sentence encoder over an exported ONNX model. `encode(texts) -> (N, dim) float32`, L2-normalised."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        variant: str | None = None,
        threads: int | None = None,
        verify_model: bool = True,
        spin: bool | None = None,
    ) -> None:
        """`verify_model=False` skips hashing model.onnx against `model_sha256` (faster; trust the directory).
        `spin=False` stops onnxruntime's intra-op threads busy-waiting between ops (None: its default, on),
        which leaves CPU to other work in the same process, e.g. a server's event loop."""
        chosen = pick_providers(ort.get_available_providers(), providers)
        self.path = resolve_export_dir(path, variant, chosen)
        self.descriptor = read_contract(self.path, verify_model=verify_model)
        self.contract = self.descriptor.to_dict()  # the parsed bellm.json, for callers that read keys
        model = self.descriptor.model_path(self.path)
        self.tokenizer = load_tokenizer_file(str(self.descriptor.tokenizer_path(self.path)))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        if spin is not None:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session = ort.InferenceSession(str(model), opts, providers=chosen)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types; say what to check
            raise RuntimeError(
                f"onnxruntime {ort.__version__} cannot load {model} (opset {self.descriptor.opset}, IR version "
                f"{self.descriptor.ir_version}; providers {chosen}): {e}"
            ) from e
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.descriptor.outputs[0]
        self._check_session()
        self.truncated_count = 0

    def _check_session(self) -> None:
        """The graph's inputs, output and width agree with bellm.json (else a clear error now, not at encode)."""
        where = self.path / CONTRACT_FILE
        if sorted(self.input_names) != sorted(self.descriptor.inputs):
            raise ExportFormatError(where, f"{list(self.descriptor.inputs)}, but the model's inputs are "
                                    f"{self.input_names}", "inputs")
        outs = {o.name: o for o in self.session.get_outputs()}
        if self.output_name not in outs:
            raise ExportFormatError(where, f"{self.output_name!r} is not an output of the model ({list(outs)})",
                                    "outputs")
        width = outs[self.output_name].shape[-1] if outs[self.output_name].shape else None
        if isinstance(width, int) and width != self.descriptor.dim:
            raise ExportFormatError(where, f"{self.descriptor.dim}, but the model outputs {width} values", "dim")

    # -- contract views
    @property
    def template(self) -> str:
        return self.descriptor.prompt

    @property
    def max_length(self) -> int:
        return self.descriptor.max_length

    @property
    def dim(self) -> int:
        return self.descriptor.dim

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (the encoder fields, the variant and the model file's hash)."""
        d = self.descriptor
        return {"runtime": "onnxruntime", **d.encoder_fields(), "variant": d.variant,
                "attention_op": d.attention_op, "opset": d.opset, "model_sha256": d.model_sha256}

    @property
    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]

    # -- encoding
    def tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        """Prompted, truncated token ids of each text, exactly as `encode` makes them (for length ordering)."""
        return [encode_one(self.tokenizer, self.template, t, self.max_length) for t in texts]

    def run_batch(self, ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        """One padded batch (B,S) int64 x3 → (B, dim) float32."""
        feeds = {"input_ids": ids, "attention_mask": mask, "span_mask": span}
        out = self.session.run([self.output_name], {k: feeds[k] for k in self.input_names})[0]
        return np.asarray(out, dtype=np.float32)

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = True,
        padding_side: str = "right",
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """Embeddings (N, dim) float32 in input order, L2-normalised by the graph; a single str gives (dim,).
        `show_progress` is accepted for parity with `bellm.Encoder.encode` (there is no bar here); any other
        keyword is a `TypeError`, as in Python, never silently ignored."""
        if not normalize:
            raise InputError("this export L2-normalises inside the graph; unnormalised embeddings are not available")
        emb, self.truncated_count = embed_texts(
            texts, lambda t: encode_one(self.tokenizer, self.template, t, self.max_length), self.run_batch, self.dim,
            batch_size, padding_side,
        )
        return emb

    def __repr__(self) -> str:
        d = self.descriptor
        return (f"OnnxEncoder({str(self.path)!r}, variant={d.variant}, k={d.bidirectional_layers}/"
                f"{d.num_layers}, pooling={d.pooling}, providers={self.providers})")
