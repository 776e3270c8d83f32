"""The trainable BeLLM module (PEFT LoRA on the decoder) and the adapter directory it produces.

LoRA is injected with `peft.get_peft_model` into the bare decoder *before* `BellmBackbone` converts
the last k layers: PEFT replaces only the linear projections, so the attention modules whose
`is_causal` flag the conversion sets are the same objects, and the bidirectional masks still apply.

The adapter directory (`adapter_config.json`, `adapter_model.safetensors`, `bellm.json`) is the
contract with the exporter and the flows: `bellm.json` records everything needed to rebuild the
encoder (base model + sha256, k, pooling, prompt, max length) and where the weights came from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from bellm.backbone import BellmBackbone, SentenceEncoderModule, truncate_decoder, unwrap_decoder
from bellm.config import RunConfig
from bellm.contract import AdapterDescriptor, read_adapter_descriptor, write_descriptor
from bellm.errors import InputError
from bellm.families import family_of
from bellm.io import atomic_path
from bellm.models import ResolvedModel, load_model
from bellm.prompts import PROMPTS
from bellm.training.full import FullWeightAdapter

if TYPE_CHECKING:
    from peft import PeftModel

    from bellm.encoder import Encoder

log = logging.getLogger(__name__)

FORBIDDEN_TARGETS = ("embed_tokens", "lm_head")


def build_lora_module(
    cfg: RunConfig, res: ResolvedModel
) -> tuple[SentenceEncoderModule, PeftModel | FullWeightAdapter]:
    """Base decoder (frozen) + LoRA adapters → SentenceEncoderModule in train mode, and the PeftModel (with
    `lora.mode="full"`: the target weights themselves train, and a `FullWeightAdapter` saves them)."""
    from peft import LoraConfig, get_peft_model

    decoder = load_model(
        res, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation, causal_lm=False
    )
    truncate_decoder(decoder, cfg.encoder.keep_layers)
    targets = list(cfg.lora.target_modules or family_of(decoder.config).lora_targets)
    bad = [t for t in targets if t in FORBIDDEN_TARGETS]
    if bad:
        raise InputError(f"lora.target_modules must not include {bad}: only the decoder's linear layers are adapted")
    if cfg.train.gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # non-reentrant: frozen inputs need no requires_grad hack
        if hasattr(decoder, "activation_checkpointing_enable"):  # transformers >= 5.x name
            decoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    n_layers = len(unwrap_decoder(decoder).layers)
    only = cfg.lora.layers
    if only is not None and only > n_layers:
        raise InputError(f"lora.layers={only} exceeds the model's {n_layers} layers")
    first = 0 if only is None else n_layers - only  # the lowest adapted layer
    placement: dict[str, Any] = {
        "layers_to_transform": None if only is None else list(range(first, n_layers)),
        "layers_pattern": None if only is None else "layers",
        "target_modules": targets,
    }
    saver: PeftModel | FullWeightAdapter
    if cfg.lora.mode == "full":
        saver = FullWeightAdapter(decoder, placement)
        backbone = BellmBackbone(decoder, cfg.encoder.bidirectional_layers, frozen_layers=first)
    else:
        saver = get_peft_model(decoder, LoraConfig(**placement, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
                                                   lora_dropout=cfg.lora.dropout, bias="none"))
        backbone = BellmBackbone(saver, cfg.encoder.bidirectional_layers)
    module = SentenceEncoderModule(backbone, cfg.encoder.pooling, normalize=False)
    module.train()
    return module, saver


def bellm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bellm")
    except PackageNotFoundError:
        return "unknown"


def count_parameters(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def adapter_metadata(
    cfg: RunConfig, res: ResolvedModel, module: SentenceEncoderModule, files: list[dict[str, Any]],
    extra: dict[str, Any],
) -> AdapterDescriptor:
    """The adapter's `bellm.json` record: how to rebuild the encoder and what produced the weights."""
    backbone = module.backbone
    return AdapterDescriptor(
        base_model=res.source,
        base_model_path=res.path,
        base_model_kind=res.kind,
        base_model_sha256=res.sha256,
        bidirectional_layers=backbone.k,
        num_layers=backbone.num_layers,
        keep_layers=cfg.encoder.keep_layers,
        pooling=module.pooling,
        prompt=cfg.encoder.template,
        prompt_name=cfg.encoder.prompt if cfg.encoder.prompt in PROMPTS else None,
        max_length=cfg.encoder.max_length,
        dim=int(backbone.config.hidden_size),
        bellm_version=bellm_version(),
        provenance={
            "lora": cfg.lora.model_dump(mode="json"),
            "loss": cfg.loss.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json"),
            "data": files,
            "seed": cfg.train.seed,
            **extra,
        },
    )


def save_adapter(dest: Path, peft_model: PeftModel | FullWeightAdapter, descriptor: AdapterDescriptor) -> Path:
    """Write the PEFT adapter + bellm.json into `dest` in one atomic rename."""
    with atomic_path(dest) as tmp:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        write_descriptor(tmp, descriptor)
        if descriptor.base_model:
            declare_base_model(tmp, descriptor.base_model)
        for f in tmp.iterdir():
            f.chmod(0o644)  # safetensors writes 0600; the exporter or a server may run as another user
    return dest


def declare_base_model(adapter_dir: Path, source: str) -> None:
    """PEFT records the directory the base weights were loaded from (for the embedded model, a path into one
    machine's cache). Name the declared source instead in adapter_config.json, and its Hub id (or nothing)
    in PEFT's README front matter, so the adapter means the same thing on any machine."""
    from huggingface_hub import ModelCard

    from bellm.models import hub_id

    cfg_path = adapter_dir / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = source
    if isinstance(cfg.get("target_modules"), list):  # PEFT writes a set in hash order: one sha256 per process
        cfg["target_modules"] = sorted(cfg["target_modules"])
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    readme = adapter_dir / "README.md"
    if readme.is_file():
        card, hub = ModelCard.load(readme), hub_id(source)
        card.data.base_model = hub
        tags = [t for t in card.data.tags or [] if not t.startswith("base_model:")]  # PEFT tags the path too
        card.data.tags = tags + ([f"base_model:adapter:{hub}"] if hub else [])
        card.save(readme)


def read_metadata(adapter_dir: str | Path) -> AdapterDescriptor:
    """The adapter's descriptor (`bellm.contract.read_adapter_descriptor`)."""
    return read_adapter_descriptor(adapter_dir)


def load_trained_encoder(
    adapter_dir: str | Path, device: str | torch.device | None = None, check_sha256: bool = True
) -> Encoder:
    """An `Encoder` rebuilt from a trained adapter directory: base model, k, pooling, prompt from bellm.json.

    The base model is resolved from the recorded source (falling back to the recorded path); with
    `check_sha256` a base model whose content differs from the one trained on is refused.
    """
    from bellm.encoder import load_encoder

    return load_encoder(None, adapter=adapter_dir, device=device, check_sha256=check_sha256)
