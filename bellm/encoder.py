"""`load_encoder` and `Encoder`: the PyTorch sentence-encoding API.

Texts are deduplicated, tokenised with the prompt (`bellm.tokenize`, shared with the ONNX runtime),
batched longest-first to pad little, run through `SentenceEncoderModule`, and returned in input order.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from bellm.backbone import BellmBackbone, SentenceEncoderModule, truncate_decoder, unwrap_decoder
from bellm.errors import InputError
from bellm.io import sha256_dir, sha256_text
from bellm.models import DEFAULT_MODEL, ResolvedModel, load_model, resolve_source
from bellm.pooling import POOLINGS
from bellm.prompts import DEFAULT_PROMPT, resolve_prompt
from bellm.tokenize import Encoded, as_text_list, batches_by_length, encode_one, pad_batch, unique_texts

log = logging.getLogger(__name__)

PROGRESS_MIN = 256  # show a progress bar from this many unique sentences on


class DegenerateConfigWarning(UserWarning):
    """A configuration that provably does nothing (k=1 with last-token pooling)."""


def warn_if_degenerate(k: int, pooling: str) -> None:
    if k == 1 and pooling == "last":
        msg = (
            "bidirectional_layers=1 with pooling='last' has no effect: the last token already attends to every "
            "position, and only the final layer was converted, so the embedding equals the causal model's bit for "
            "bit. Use k>=2 or pooling='mean' for a real backward dependency."
        )
        warnings.warn(msg, DegenerateConfigWarning, stacklevel=3)
        log.warning(msg)


def hf_backend_tokenizer(path: str) -> Tokenizer:
    """The fast `tokenizers.Tokenizer` of an HF model directory or hub id, padding/truncation off."""
    tj = Path(path) / "tokenizer.json"
    if tj.is_file():
        tok = Tokenizer.from_file(str(tj))
    else:
        from transformers import AutoTokenizer

        tok = Tokenizer.from_str(AutoTokenizer.from_pretrained(path).backend_tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    return tok


class Encoder:
    """Sentence encoder over a BeLLM module. `encode(texts) -> (N, dim) float32`."""

    def __init__(
        self,
        module: SentenceEncoderModule,
        tokenizer: Tokenizer,
        prompt: str = DEFAULT_PROMPT,
        max_length: int = 64,
        source: ResolvedModel | None = None,
        adapter_sha256: str | None = None,
    ) -> None:
        self.module = module
        self.tokenizer = tokenizer
        self.prompt_name = prompt
        self.template = resolve_prompt(prompt)
        self.max_length = max_length
        self.source = source
        self.adapter_sha256 = adapter_sha256
        warn_if_degenerate(self.k, self.pooling)

    @property
    def k(self) -> int:
        return self.module.backbone.k

    @property
    def pooling(self) -> str:
        return self.module.pooling

    @property
    def num_layers(self) -> int:
        return self.module.backbone.num_layers

    @property
    def dim(self) -> int:
        return int(self.module.backbone.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings; the basis of `fingerprint` and of `bellm.json`."""
        return {
            "base_model": self.source.source if self.source else None,
            "base_model_sha256": self.source.sha256 if self.source else None,
            "adapter_sha256": self.adapter_sha256,
            "bidirectional_layers": self.k,
            "num_layers": self.num_layers,
            "pooling": self.pooling,
            "prompt": self.template,
            "max_length": self.max_length,
            "dim": self.dim,
        }

    @property
    def fingerprint(self) -> str:
        """Keys the embedding cache: what `describe()` says, plus the weights' dtype and the encoding code."""
        from bellm.provenance import ENCODING_MODULES, code_fingerprint

        dtype = str(next(self.module.parameters()).dtype)
        key = {**self.describe(), "dtype": dtype, "code": code_fingerprint(ENCODING_MODULES)}
        return sha256_text(json.dumps(key, sort_keys=True))[:16]

    def tokenize(self, texts: Sequence[str]) -> list[Encoded]:
        return [encode_one(self.tokenizer, self.template, t, self.max_length) for t in texts]

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool | None = None,
        padding_side: str = "right",
    ) -> np.ndarray:
        """Embeddings (N, dim) float32 in input order; a single string gives (dim,)."""
        single, items = as_text_list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        uniq, inverse = unique_texts(items)
        encs = self.tokenize(uniq)
        out = np.zeros((len(uniq), self.dim), dtype=np.float32)
        batches = batches_by_length(encs, batch_size)
        progress = len(uniq) >= PROGRESS_MIN if show_progress is None else show_progress
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(uniq), desc="encode", unit="sent")
        was_training = self.module.training
        self.module.eval()
        try:
            for idx in batches:
                ids, mask, span = pad_batch([encs[i] for i in idx], side=padding_side)
                emb = self.module(
                    torch.from_numpy(ids).to(self.device),
                    torch.from_numpy(mask).to(self.device),
                    torch.from_numpy(span).to(self.device),
                )  # (b, H)
                if normalize:
                    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                out[idx] = emb.float().cpu().numpy()
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
            self.module.train(was_training)
        result = out[inverse]
        return result[0] if single else result


def load_encoder(
    source: str = DEFAULT_MODEL,
    bidirectional_layers: int | str = 2,
    pooling: str = "last",
    prompt: str = DEFAULT_PROMPT,
    max_length: int = 64,
    adapter: str | Path | None = None,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    keep_layers: int | None = None,
) -> Encoder:
    """A ready encoder from a model source; `adapter` (a PEFT LoRA directory) is merged for fast inference."""
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    resolve_prompt(prompt)
    res = resolve_source(source)
    decoder = load_model(res, dtype=dtype, attn_implementation=attn_implementation, causal_lm=False)
    truncate_decoder(decoder, keep_layers)  # before the adapter: it was trained on the truncated stack
    adapter_sha = None
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise InputError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    if adapter is not None:
        from peft import PeftModel

        decoder = PeftModel.from_pretrained(decoder, str(adapter)).merge_and_unload()
        adapter_sha = sha256_dir(adapter)
    if device is not None:
        decoder = decoder.to(device)
    backbone = BellmBackbone(unwrap_decoder(decoder), bidirectional_layers)
    module = SentenceEncoderModule(backbone, pooling).eval()
    return Encoder(module, hf_backend_tokenizer(res.path), prompt, max_length, res, adapter_sha)
