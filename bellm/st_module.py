"""A sentence-transformers input module that runs a bellm ONNX export (`BellmOnnx`).

Why a custom module: no standard sentence-transformers composition expresses a bellm model. The converted
layers need a non-causal (padding-masked) attention that `transformers`' LLaMA/Qwen/Mistral classes only
apply to every layer or none, and the prompt wraps the sentence (text after it too), which the
prefix-only `prompts` of sentence-transformers cannot express. So the module prompts, tokenises and
truncates exactly like bellm (`tokenize.py`, copied beside it) and runs the exported `model.onnx` with
onnxruntime; the embeddings are those of `bellm.runtime.OnnxEncoder` (tests check ≤ 1e-4).

The export writes this file as `bellm_st.py` (and `tokenize.py` as `bellm_tokenize.py`, the relative
import rewritten) into each variant directory with `modules.json`, so
`SentenceTransformer(dir, trust_remote_code=True)` loads it without bellm installed: it needs
sentence-transformers (>= 5), onnxruntime, tokenizers and numpy. Inference only: there are no torch
weights to fine-tune.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from .tokenize import encode_one, load_tokenizer_file, pad_batch

try:  # sentence-transformers >= 6
    from sentence_transformers.base.modules import InputModule
except ImportError:  # sentence-transformers 5.x
    from sentence_transformers.models import InputModule

FILES = ("model.onnx", "tokenizer.json", "bellm.json")
PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class BellmOnnx(InputModule):
    """Prompt + tokenise like bellm, run `model.onnx`, return `sentence_embedding` (unit length)."""

    config_file_name = "bellm.json"
    save_in_root = True

    def __init__(self, model_dir: str, providers: list[str] | None = None) -> None:
        super().__init__()
        self.model_dir = model_dir
        with open(os.path.join(model_dir, "bellm.json"), encoding="utf-8") as f:
            self.contract: dict[str, Any] = json.load(f)
        self.tokenizer = load_tokenizer_file(os.path.join(model_dir, self.contract.get("tokenizer_file",
                                                                                        "tokenizer.json")))
        available = ort.get_available_providers()
        chosen = providers or [p for p in PROVIDERS if p in available] or available
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        model = os.path.join(model_dir, self.contract.get("model_file", "model.onnx"))
        self.session = ort.InferenceSession(model, opts, providers=chosen)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.contract.get("outputs", ["sentence_embedding"])[0]
        self.max_seq_length = int(self.contract["max_length"])

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token: bool | str | None = None,
             cache_folder: str | None = None, revision: str | None = None, local_files_only: bool = False,
             **kwargs: Any) -> BellmOnnx:
        path = cls.load_dir_path(model_name_or_path, subfolder=subfolder, token=token, cache_folder=cache_folder,
                                 revision=revision, local_files_only=local_files_only)
        return cls(path)

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, span_mask (B,S) int64. A sentence-transformers `prompt` is prepended to
        the sentence, inside bellm's own prompt template."""
        texts = [(prompt or "") + t for t in inputs]
        encs = [encode_one(self.tokenizer, self.contract["prompt"], t, self.max_seq_length) for t in texts]
        ids, mask, span = pad_batch(encs)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
                "span_mask": torch.from_numpy(span)}

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        device = features["input_ids"].device
        feeds = {name: features[name].cpu().numpy() for name in self.input_names}
        emb = self.session.run([self.output_name], feeds)[0]  # (B, dim) float32, L2-normalised in the graph
        features["sentence_embedding"] = torch.from_numpy(np.asarray(emb, dtype=np.float32)).to(device)
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return int(self.contract["dim"])

    get_embedding_dimension = get_sentence_embedding_dimension

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """Copy the export's files (the module is the export: nothing else to save)."""
        os.makedirs(output_path, exist_ok=True)
        for name in (*FILES, "model.onnx.data"):
            src = os.path.join(self.model_dir, name)
            if os.path.isfile(src) and os.path.abspath(src) != os.path.abspath(os.path.join(output_path, name)):
                shutil.copy(src, output_path)
