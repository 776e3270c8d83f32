"""`load_encoder` and `Encoder`: the PyTorch sentence-encoding API.

Texts are deduplicated, tokenised with the prompt (`bellm.tokenize`, shared with the ONNX runtime),
batched longest-first to pad little, run through `SentenceEncoderModule`, and returned in input order.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from bellm.backbone import BellmBackbone, SentenceEncoderModule, truncate_decoder, unwrap_decoder
from bellm.config import DegenerateConfigWarning, EncoderConfig, encoder_config, warn_if_degenerate  # noqa: F401
from bellm.contract import read_adapter_descriptor
from bellm.errors import InputError
from bellm.frozen_prefix import first_adapted_layer
from bellm.io import sha256_dir, sha256_text
from bellm.models import ResolvedModel, load_model, resolve_source
from bellm.prompts import resolve_prompt
from bellm.tokenize import Encoded, RunBatch, as_text_list, embed_texts, encode_one

log = logging.getLogger(__name__)

PROGRESS_MIN = 256  # show a progress bar from this many unique sentences on


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
        prompt: str,
        max_length: int,
        source: ResolvedModel | None = None,
        adapter_sha256: str | None = None,
        config: EncoderConfig | None = None,
    ) -> None:
        self.module = module
        self.config = config  # the settled description it was built from (adapter settings included)
        self.tokenizer = tokenizer
        self.prompt_name = prompt
        self.template = resolve_prompt(prompt)
        self.max_length = max_length
        self.source = source
        self.adapter_sha256 = adapter_sha256
        self.precision: dict[str, Any] = {"dtype": "float32", "reason": "default"}
        # Replay CUDA graphs when the module is on a GPU (`bellm.cuda_graphs`); False runs every batch eagerly.
        self.cuda_graphs = True
        self._graph_runners: dict[bool, Any] = {}  # normalize → CudaGraphRunner, kept across calls
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
    def dtype(self) -> str:
        """The parameters' dtype name (`float32`, `bfloat16`, ...); the fingerprint includes it."""
        return str(next(self.module.parameters()).dtype).removeprefix("torch.")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def describe(self) -> dict[str, Any]:
        """What determines the embeddings (`bellm.contract.EncoderFields`): `fingerprint` and `bellm.json`."""
        return {
            "base_model": self.source.source if self.source else None,
            "base_model_sha256": self.source.sha256 if self.source else None,
            "adapter_sha256": self.adapter_sha256,
            "bidirectional_layers": self.k,
            "num_layers": self.num_layers,
            "keep_layers": self.config.keep_layers if self.config is not None else None,
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

    def runner(self, normalize: bool = True) -> RunBatch:
        """The forward as a `RunBatch`: CUDA-graph replay on a GPU (unless `cuda_graphs` is off), else eager.
        The graph runner is kept, so its captured shapes serve every later call."""
        from bellm.cuda_graphs import CudaGraphRunner, weights_key

        if not (self.cuda_graphs and self.device.type == "cuda"):
            return module_runner(self.module, normalize)
        run = self._graph_runners.get(normalize)
        if run is None or run.weights != weights_key(self.module):  # moved, cast or reloaded: capture anew
            run = self._graph_runners[normalize] = CudaGraphRunner(self.module, normalize)
        return run

    def run_batch(self, ids: np.ndarray, mask: np.ndarray, span: np.ndarray, normalize: bool = True) -> np.ndarray:
        """One padded batch (B,S) int64 x3 → (B, dim) float32 (L2-normalised unless asked not to)."""
        return self.runner(normalize)(ids, mask, span)

    def encode(
        self,
        texts: Sequence[str] | str,
        batch_size: int = 32,
        normalize: bool = True,
        show_progress: bool | None = None,
        padding_side: str = "right",
    ) -> np.ndarray:
        """Embeddings (N, dim) float32 in input order; a single str gives (dim,)."""
        n = len(set(as_text_list(texts)[1]))
        progress = n >= PROGRESS_MIN if show_progress is None else show_progress
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="encode", unit="sent")
        try:
            emb, _ = embed_texts(
                texts, lambda t: encode_one(self.tokenizer, self.template, t, self.max_length),
                self.runner(normalize), self.dim, batch_size, padding_side,
                bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        return emb


def module_runner(module: SentenceEncoderModule, normalize: bool = True) -> RunBatch:
    """The PyTorch forward as a `bellm.tokenize.RunBatch`: eval mode (dropout off), no grad, fp32 out."""

    @torch.inference_mode()
    def run(ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        dev = next(module.parameters()).device
        was_training = module.training
        module.eval()
        try:
            emb = module(*(torch.from_numpy(x).to(dev) for x in (ids, mask, span)))  # (B,H)
        finally:
            module.train(was_training)
        if normalize:
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.float().cpu().numpy()

    return run


def load_encoder(
    config: EncoderConfig | str | None = None,
    *,
    adapter: str | Path | None = None,
    override_adapter: bool = False,
    check_sha256: bool = True,
    attn_implementation: str = "sdpa",
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
    **settings: Any,
) -> Encoder:
    """A ready encoder from an `EncoderConfig` (or a model source string plus settings as keywords).

    `adapter` (a trained PEFT LoRA directory) is merged for fast inference, and its `bellm.json` is
    authoritative: settings not given explicitly are taken from it, and an explicit setting that contradicts
    it raises `AdapterMismatchError` unless `override_adapter=True`. With `check_sha256`, a base model whose
    content differs from the one the adapter was trained on is refused.

    `dtype`: None / "float32" (default), "bfloat16", "float16", or "auto": bf16 where the device computes it
    natively and it agrees with fp32 on a few sentences, else fp32 (`bellm.precision`; the decision is in
    `encoder.precision`).
    """
    from bellm.precision import choose_precision, validate_dtype

    auto = dtype is not None and validate_dtype(dtype) == "auto"
    if auto:
        dtype = None
    cfg = encoder_config(config, **settings)
    res = None
    if adapter is not None:
        cfg, res = settle_adapter(cfg, adapter, override_adapter, check_sha256)
    res = res or resolve_source(cfg.model_source)
    decoder = load_model(res, dtype=dtype, attn_implementation=attn_implementation, causal_lm=False)
    truncate_decoder(decoder, cfg.keep_layers)  # before the adapter: it was trained on the truncated stack
    adapter_sha, frozen = None, None
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise InputError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
    if adapter is not None:
        peft_model = _load_lora(decoder, Path(adapter))
        frozen = first_adapted_layer(unwrap_decoder(peft_model).layers)  # where the merge will change weights
        decoder = peft_model.merge_and_unload()
        adapter_sha = sha256_dir(adapter)
    if device is not None:
        decoder = decoder.to(device)
    backbone = BellmBackbone(unwrap_decoder(decoder), cfg.bidirectional_layers, frozen_layers=frozen)
    module = SentenceEncoderModule(backbone, cfg.pooling).eval()
    enc = Encoder(module, hf_backend_tokenizer(res.path), cfg.prompt, cfg.max_length, res, adapter_sha, cfg)
    enc.precision = (choose_precision(enc, "auto") if auto
                     else {"dtype": enc.dtype, "reason": "default" if dtype is None else "requested"})
    if adapter is not None:
        check_adapter_shape(adapter, enc.num_layers, enc.dim)
    return enc


def check_adapter_shape(adapter: str | Path, num_layers: int, dim: int) -> None:
    """The adapter's `bellm.json` must describe the model it is applied to: same layer count (after
    keep_layers) and embedding size. A descriptor that says otherwise was edited or belongs to another model."""
    desc = read_adapter_descriptor(adapter)
    wrong = [f"{name} {said} (the model has {has})" for name, said, has in
             (("num_layers", desc.num_layers, num_layers), ("dim", desc.dim, dim)) if said != has]
    if wrong:
        raise AdapterMismatchError(f"{adapter}: its bellm.json says {'; '.join(wrong)}")


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")  # what PEFT saves


def _load_lora(decoder: torch.nn.Module, adapter: Path):  # noqa: ANN202 - a peft.PeftModel
    """PEFT's model over `decoder` with the adapter's weights. Missing, unreadable or mis-shaped weights (an
    `adapter_config.json` that contradicts them) are the user's files, so an `InputError` naming them."""
    from peft import PeftModel

    if not any((adapter / name).is_file() for name in ADAPTER_WEIGHTS):
        raise InputError(f"{adapter}: no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    try:
        return PeftModel.from_pretrained(decoder, str(adapter))
    except Exception as e:  # noqa: BLE001 - safetensors, torch and PEFT raise many types for one bad file
        reason = " ".join(str(e).split())[:400]
        raise InputError(f"{adapter}: cannot load the adapter weights with its adapter_config.json "
                         f"({type(e).__name__}: {reason})") from None


class AdapterMismatchError(InputError):
    """An explicit encoder setting contradicts the adapter's `bellm.json`."""


def settle_adapter(
    cfg: EncoderConfig, adapter: str | Path, override: bool = False, check_sha256: bool = True
) -> tuple[EncoderConfig, ResolvedModel]:
    """The adapter's settings with `cfg`'s explicit ones checked against them (see `load_encoder`)."""
    desc = read_adapter_descriptor(adapter)
    trained = EncoderConfig.from_descriptor(desc)
    given = cfg.explicit()
    source = given.pop("source", None)
    clashes = []
    for name, value in given.items():
        if name == "prompt":
            same = resolve_prompt(value) == desc.prompt
        elif name == "bidirectional_layers":
            same = (desc.num_layers if value == "all" else value) == desc.bidirectional_layers
        else:
            same = value == getattr(trained, name)
        if not same:
            clashes.append(f"{name}={value!r} (trained with {getattr(trained, name)!r})")
    if source is not None:
        res = resolve_source(source)
    else:
        try:
            res = resolve_source(desc.base_model or "")
        except ValueError:
            res = resolve_source(desc.base_model_path or "")
    if check_sha256 and res.sha256 != desc.base_model_sha256:
        trained_on = str(desc.base_model_sha256)[:12]
        clashes.append(f"model {res.source!r} (sha256 {res.sha256[:12]}…; trained on {trained_on}…)")
    if clashes and not override:
        raise AdapterMismatchError(
            f"{adapter}: {'; '.join(clashes)} contradict(s) the adapter's bellm.json; drop the setting to use the "
            "adapter's, or override it explicitly (--override-adapter / override_adapter=True)"
        )
    if clashes:
        log.warning("%s: overriding the adapter's settings: %s", adapter, "; ".join(clashes))
    return trained.model_copy(update={**given, "source": res.source}), res
