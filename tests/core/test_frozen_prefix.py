"""The frozen-prefix cache: the cached path encodes and trains as the direct one, and is used only where
its states cannot differ (frozen, causal, same weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import bellm
from bellm import frozen_prefix

TEXTS = [
    "A man is playing a guitar.",
    "Two dogs run through a field of tall grass.",
    "The cat sleeps.",
    "A woman slices an onion on a wooden board while the radio plays.",
]


@pytest.fixture(autouse=True)
def _off_after() -> None:
    yield
    frozen_prefix.disable()


@pytest.fixture(scope="module")
def six_layers(tiny_model_factory) -> Path:
    return tiny_model_factory("llama", 6)


@pytest.mark.parametrize("pooling", ["last", "last_mean_span", "mean"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_cached_prefix_encodes_as_the_direct_path(six_layers: Path, pooling: str, side: str) -> None:
    enc = bellm.load_encoder(str(six_layers), bidirectional_layers=2, pooling=pooling)
    assert enc.module.backbone.prefix.layers == 4  # the causal layers below the bidirectional top 2
    direct = enc.encode(TEXTS, batch_size=3, padding_side=side)
    frozen_prefix.enable(1.0)
    filled = enc.encode(TEXTS, batch_size=3, padding_side=side)
    after_fill = frozen_prefix.stats()
    assert after_fill["misses"] == len(TEXTS) and after_fill["sentences"] == len(TEXTS)
    # Other batches (other padding) read the stored rows.
    reused = enc.encode(TEXTS[::-1], batch_size=2, padding_side="left" if side == "right" else "right")[::-1]
    assert frozen_prefix.stats()["hits"] == len(TEXTS)
    assert np.abs(filled - direct).max() < 1e-5
    assert np.abs(reused - direct).max() < 1e-5


def test_a_trainable_or_changed_prefix_is_never_read_from_the_cache(six_layers: Path) -> None:
    enc = bellm.load_encoder(str(six_layers), bidirectional_layers=1, pooling="mean")
    backbone = enc.module.backbone
    frozen_prefix.enable(1.0)
    ids = torch.tensor([[1, 2, 3, 4]])
    mask = torch.ones_like(ids)
    with torch.enable_grad():  # parameters require grad here: a cached state would lose their gradient
        backbone(ids, mask)
    assert frozen_prefix.stats()["stores"] == 0
    with torch.no_grad():
        before = backbone(ids, mask)
        emb = bellm.backbone.unwrap_decoder(backbone.decoder).embed_tokens.weight
        emb[1:5] += 1.0  # in place: the weights' version changes, so does the store's key
        changed = backbone(ids, mask)
        assert frozen_prefix.stats()["stores"] == 2
        frozen_prefix.disable()
        assert torch.allclose(changed, backbone(ids, mask), atol=1e-5)
        assert not torch.allclose(before, changed, atol=1e-3)


def test_training_with_the_cache_matches_training_without(six_layers: Path, tmp_path: Path) -> None:
    """LoRA on the top 2 of 6 layers: the bottom 4 come from the cache (filled in step 1, read from step 2 on,
    when the same pairs come round again) and the adapter trains to the same weights."""
    from bellm.profiles import build_config
    from bellm.training import load_trained_encoder, train

    cfg = build_config("smoke", {
        "model": {"source": str(six_layers)},
        "encoder": {"bidirectional_layers": 1, "pooling": "last_mean_span"},
        "lora": {"layers": 2},
        "data": {"max_train_pairs": 8, "train_triplets": []},
        "train": {"progress": False, "max_steps": 3, "batch_size": 8, "lr": 1e-3},
    })
    plain = train(cfg, tmp_path / "plain")
    frozen_prefix.enable(1.0)
    cached = train(cfg, tmp_path / "cached")
    st = frozen_prefix.stats()
    assert st["hits"] > 0 and st["misses"] > 0  # one epoch is one batch: steps 2 and 3 reread step 1's rows
    a = load_file(str(plain.adapter_dir / "adapter_model.safetensors"))
    b = load_file(str(cached.adapter_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    # The merged adapter keeps its frozen prefix below the layers LoRA changed.
    enc = load_trained_encoder(cached.adapter_dir)
    assert enc.module.backbone.prefix.layers == 4
