"""Full fine-tuning of the adapted linear layers, saved as an exact LoRA adapter.

`lora.mode = "full"` trains the full weight matrices of the same projections LoRA would adapt (the
`lora.target_modules` of the last `lora.layers` decoder layers; embeddings, norms and the layers below stay
frozen). The result is written in PEFT's adapter format so the exporter, the runtime, the registry and
`load_encoder` need no second path: a trained weight W' = W + ΔW is stored as `lora_B = ΔW`,
`lora_A = I` (rank = the layer's input width, alpha = rank, so the scale is 1). Merging computes
W + ΔW·I, which is W' exactly in fp32.

The adapter is larger than the weights it replaces (ΔW plus an identity per module); that is the price of
one format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
PEFT_PREFIX = "base_model.model."  # how PEFT names a module of the bare decoder in adapter_model.safetensors


def trainable_linears(decoder: nn.Module, targets: list[str], layer_ids: list[int] | None) -> dict[str, nn.Linear]:
    """{module name: nn.Linear} of the target projections in the given decoder layers (None: every layer; names
    as in `decoder`)."""
    out: dict[str, nn.Linear] = {}
    for name, mod in decoder.named_modules():
        layer = _LAYER.search(name)
        if (isinstance(mod, nn.Linear) and name.split(".")[-1] in targets and layer
                and (layer_ids is None or int(layer[1]) in layer_ids)):
            out[name] = mod
    return out


class FullWeightAdapter:
    """Marks the target weights trainable, remembers their base values, and saves the difference as LoRA."""

    def __init__(self, decoder: nn.Module, placement: dict[str, Any]) -> None:
        """`placement`: the LoraConfig fields saying where LoRA would go (`target_modules`, `layers_to_transform`
        (None: all layers), `layers_pattern`); they also go into adapter_config.json."""
        for p in decoder.parameters():
            p.requires_grad_(False)
        targets, layer_ids = placement["target_modules"], placement["layers_to_transform"]
        self.linears = trainable_linears(decoder, targets, layer_ids)
        if not self.linears:
            raise ValueError(f"no linear layers named {targets} in layers {layer_ids}")
        for mod in self.linears.values():
            if mod.bias is not None:
                raise ValueError("full fine-tuning saves weight deltas only; biased projections are not supported")
            mod.weight.requires_grad_(True)
        self.base = {n: m.weight.detach().to("cpu", torch.float32, copy=True) for n, m in self.linears.items()}
        self.placement = placement

    def lora_state(self) -> dict[str, torch.Tensor]:
        """PEFT-named lora_A / lora_B tensors whose merge reproduces the trained weights exactly."""
        state: dict[str, torch.Tensor] = {}
        for name, mod in self.linears.items():
            delta = mod.weight.detach().to("cpu", torch.float32) - self.base[name]  # (out, in)
            state[f"{PEFT_PREFIX}{name}.lora_A.weight"] = torch.eye(delta.shape[1])  # (in, in)
            state[f"{PEFT_PREFIX}{name}.lora_B.weight"] = delta.contiguous()  # (out, in)
        return state

    def save_pretrained(self, path: str, safe_serialization: bool = True) -> None:
        """The PEFT adapter directory (the interface `save_adapter` calls on a PeftModel)."""
        from peft import LoraConfig

        ranks = {name: m.weight.shape[1] for name, m in self.linears.items()}
        cfg = LoraConfig(**self.placement, r=max(ranks.values()), lora_alpha=max(ranks.values()),
                         rank_pattern=ranks, alpha_pattern=dict(ranks), lora_dropout=0.0, bias="none")
        cfg.base_model_name_or_path = None
        cfg.inference_mode = True
        cfg.save_pretrained(path)
        save_file(self.lora_state(), str(Path(path) / "adapter_model.safetensors"), metadata={"format": "pt"})
