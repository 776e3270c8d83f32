"""`OnnxEncoder`: encode sentences with an exported bellm model, using only numpy, tokenizers and onnxruntime.

An export directory holds `model.onnx`, `tokenizer.json` and `bellm.json` (the contract: prompt, max_length,
pooling, ...). Texts are prompted, tokenised and truncated exactly as in training (`bellm.tokenize`, the same
code the PyTorch encoder uses), deduplicated, batched longest-first, run, and returned in input order.

Input rules (documented, never a crash):
* a single `str` gives a (dim,) vector; a sequence of `str` gives (N, dim); an empty sequence gives (0, dim);
* a non-string item raises `TypeError` naming its index;
* a text longer than `max_length` tokens (with the prompt) is truncated at the end of the *sentence*, so the
  prompt, which last-token pooling reads, stays whole; `truncated_count` of the last call says how many were.

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

from bellm.errors import InputError
from bellm.tokenize import as_text_list, batches_by_length, encode_one, load_tokenizer_file, pad_batch, unique_texts

PREFERRED_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
MODEL_FILE = "model.onnx"
CONTRACT_FILE = "bellm.json"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_KEYS = ("prompt", "bidirectional_layers", "num_layers", "pooling", "dim", "max_length", "variant")


class ExportFormatError(InputError):
    """The directory is not a bellm ONNX export (missing file, bad bellm.json)."""


def pick_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """Requested providers (validated), else TensorRT/CUDA/CPU in that order among the available ones."""
    if requested is not None:
        missing = [p for p in requested if p not in available]
        if missing:
            raise InputError(f"execution provider(s) {missing} not available; this onnxruntime has {list(available)}")
        return list(requested)
    chosen = [p for p in PREFERRED_PROVIDERS if p in available]
    return chosen or list(available)


def resolve_export_dir(path: str | os.PathLike[str], variant: str | None = None) -> Path:
    """The variant directory holding bellm.json: given directly, via its model.onnx, or under an export root."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    if not p.is_dir():
        raise ExportFormatError(f"{path}: no such export directory")
    if (p / CONTRACT_FILE).is_file():
        if variant is not None and json.loads((p / CONTRACT_FILE).read_text()).get("variant") != variant:
            raise ExportFormatError(f"{p} holds another variant than {variant!r}")
        return p
    found = sorted(q.parent.name for q in p.glob(f"*/{CONTRACT_FILE}"))
    if not found:
        raise ExportFormatError(f"{p}: no {CONTRACT_FILE} here or in a variant subdirectory (not a bellm export)")
    want = variant or ("fp32" if "fp32" in found else found[0])
    if want not in found:
        raise ExportFormatError(f"{p}: variant {want!r} not exported; found {found}")
    return p / want


def read_contract(d: Path) -> dict[str, Any]:
    try:
        contract = json.loads((d / CONTRACT_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExportFormatError(f"{d / CONTRACT_FILE}: cannot read ({e})") from None
    missing = [k for k in REQUIRED_KEYS if k not in contract]
    if missing:
        raise ExportFormatError(f"{d / CONTRACT_FILE}: missing keys {missing}")
    if contract["prompt"].count("{text}") != 1:
        raise ExportFormatError(f"{d / CONTRACT_FILE}: prompt must contain '{{text}}' exactly once")
    return contract


class OnnxEncoder:
    """Sentence encoder over an exported ONNX model. `encode(texts) -> (N, dim) float32`, L2-normalised."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: Sequence[str] | None = None,
        variant: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = resolve_export_dir(path, variant)
        self.contract = read_contract(self.path)
        model = self.path / self.contract.get("model_file", MODEL_FILE)
        for needed in (model, self.path / TOKENIZER_FILE):
            if not needed.is_file():
                raise ExportFormatError(f"{needed}: missing from the export")
        self.tokenizer = load_tokenizer_file(str(self.path / TOKENIZER_FILE))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        chosen = pick_providers(ort.get_available_providers(), providers)
        try:
            self.session = ort.InferenceSession(str(model), opts, providers=chosen)
        except Exception as e:  # noqa: BLE001 - ORT raises its own exception types; say what to check
            raise RuntimeError(
                f"onnxruntime {ort.__version__} cannot load {model} (opset {self.contract.get('opset')}; "
                f"providers {chosen}): {e}"
            ) from e
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.contract.get("outputs", ["sentence_embedding"])[0]
        self.truncated_count = 0

    # -- contract views
    @property
    def template(self) -> str:
        return self.contract["prompt"]

    @property
    def max_length(self) -> int:
        return int(self.contract["max_length"])

    @property
    def dim(self) -> int:
        return int(self.contract["dim"])

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (the contract, the variant and the model file's hash)."""
        keys = ("base_model", "base_model_sha256", "adapter_sha256", "bidirectional_layers", "num_layers",
                "pooling", "prompt", "max_length", "dim", "variant", "attention_op", "opset", "model_sha256")
        return {"runtime": "onnxruntime", **{k: self.contract.get(k) for k in keys}}

    @property
    def fingerprint(self) -> str:
        import hashlib

        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]

    # -- encoding
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
        single, items = as_text_list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq, inverse = unique_texts(items)
        encs = [encode_one(self.tokenizer, self.template, t, self.max_length) for t in uniq]
        self.truncated_count = sum(e.truncated for e in encs)
        out = np.zeros((len(uniq), self.dim), dtype=np.float32)
        for idx in batches_by_length(encs, batch_size):
            out[idx] = self.run_batch(*pad_batch([encs[i] for i in idx], side=padding_side))
        result = out[inverse]
        return result[0] if single else result

    def __repr__(self) -> str:
        c = self.contract
        return (f"OnnxEncoder({str(self.path)!r}, variant={c['variant']}, k={c['bidirectional_layers']}/"
                f"{c['num_layers']}, pooling={c['pooling']}, providers={self.providers})")
