"""Model families: the allow-list of decoder architectures bellm converts, and all that is family-specific.

BeLLM runs a decoder's own modules (`bellm.backbone`): embeddings, rotary, each layer with a per-layer
mask, the final norm. That is only correct when the family's forward does nothing else — a family that
scales its embeddings (Gemma), adds soft-capping or runs a parallel block would run and give silently
wrong embeddings. So families are allowed by `config.model_type`, never accepted by shape:

* `unwrap` finds the bare decoder under PEFT / `*ForCausalLM` wrappers and checks its family;
* `Family.embed`, `Family.run_layer`: the embedding and the layer call;
* `Family.attention` / `attention_namespace`: the attention module of a layer, and how the ONNX exporter
  names it (`bellm.export.rewrite` and `bellm.export.check` find one fused attention node per layer by it);
* `Family.lora_targets`: the linear layers LoRA adapts by default.

Adding a family: check that its decoder forward is exactly embed_tokens → rotary_emb → layers(h, mask,
position_embeddings, position_ids) → norm, add one `Family(...)` entry to `FAMILIES` below, and add its
`model_type` to the per-family property tests (`tests/core/test_families.py`: the k=0 BeLLM forward must equal
the model's own forward; padding and batch invariance; export parity). Torch is not imported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bellm.errors import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HOW_TO_ADD = (
    "To add a family, check its decoder forward is exactly embed_tokens -> rotary_emb -> layers -> norm (no "
    "embedding scaling, soft-capping or parallel blocks), add a Family entry to FAMILIES in bellm/families.py "
    "and its model_type to tests/core/test_families.py"
)


class UnsupportedModelError(InputError):
    """A decoder family bellm has not been verified on (it might run, and give wrong embeddings)."""


@dataclass(frozen=True)
class Family:
    """Everything bellm needs to know about one decoder family (`config.model_type`)."""

    model_type: str
    lora_targets: tuple[str, ...] = LLAMA_LINEAR  # never the embeddings or lm_head
    attention: str = "self_attn"  # the attribute of a decoder layer holding its attention module

    def embed(self, decoder: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return decoder.embed_tokens(input_ids)  # (B,S,H)

    def attention_modules(self, decoder: nn.Module) -> list[nn.Module]:
        return [getattr(layer, self.attention) for layer in decoder.layers]

    def run_layer(
        self, layer: nn.Module, h: torch.Tensor, mask: Any, rope: Any, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """One decoder layer with an explicit mask (None: the attention module's own is_causal) → (B,S,H)."""
        out = layer(h, attention_mask=mask, position_embeddings=rope, position_ids=position_ids, use_cache=False)
        return out[0] if isinstance(out, tuple) else out


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("llama"),
        Family("mistral"),  # sliding window: identical to full attention while max_length <= sliding_window
        Family("qwen2"),
        Family("qwen3"),  # q/k norms live inside the attention module: nothing extra to do
    )
}


def family_of(config: Any) -> Family:
    """The `Family` of an HF config (or anything with `.config`); unknown families are refused."""
    cfg = getattr(config, "config", config)
    model_type = getattr(cfg, "model_type", None)
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type {model_type!r} is not a supported decoder family (supported: {', '.join(FAMILIES)}). "
            f"{HOW_TO_ADD}."
        )
    return FAMILIES[model_type]


def unwrap(model: nn.Module) -> nn.Module:
    """The bare decoder stack (`.layers`, `.embed_tokens`, `.norm`, `.rotary_emb`) under PEFT/CausalLM wrappers,
    after checking that its family is supported."""
    m = model
    for _ in range(5):
        if hasattr(m, "layers") and hasattr(m, "embed_tokens"):
            family_of(m.config)
            return m
        if hasattr(m, "get_base_model"):  # PeftModel
            m = m.get_base_model()
        elif hasattr(m, "model"):  # *ForCausalLM, LoraModel
            m = m.model
        else:
            break
    family_of(getattr(model, "config", None))  # an unknown family says so first
    raise UnsupportedModelError(f"cannot find the decoder stack inside {type(model).__name__}")


def attention_namespace() -> re.Pattern[str]:
    """How the ONNX exporter names a layer's attention (`...layers.<i>.<attention>...`); group 1 is i."""
    names = "|".join(sorted({re.escape(f.attention) for f in FAMILIES.values()}))
    return re.compile(rf"layers\.(\d+)\.(?:{names})")
