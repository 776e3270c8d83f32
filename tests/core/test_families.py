"""The model-family registry: property tests per supported family, and unknown families refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bellm.backbone import BellmBackbone
from bellm.families import FAMILIES, UnsupportedModelError, attention_namespace, family_of
from bellm.models import load_model

ARCHS = sorted(FAMILIES)


@pytest.mark.parametrize("arch", ARCHS)
def test_k0_forward_is_the_models_own_forward(tiny_model_factory, arch: str) -> None:
    """With no bidirectional layer, BeLLM's layer-by-layer run must equal the family's own forward: a family
    whose forward does more (embedding scaling, soft-capping) fails here."""
    model = load_model(str(tiny_model_factory(arch, 3)), causal_lm=False)
    ids = torch.randint(1, 1000, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B,S,H)
        got = BellmBackbone(model, 0, allow_mask_skip=False)(ids, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_and_batch_invariance(tiny_model_factory, arch: str) -> None:
    from bellm.encoder import load_encoder

    enc = load_encoder(str(tiny_model_factory(arch, 3)), bidirectional_layers=2, pooling="mean")
    texts = ["A man plays a guitar.", "Two dogs run across a snowy field near the river.", "Hi"]
    alone = np.stack([enc.encode(t) for t in texts])
    for side in ("right", "left"):
        np.testing.assert_allclose(enc.encode(texts, padding_side=side), alone, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_targets_and_attention_names_exist(tiny_model_factory, arch: str) -> None:
    model = load_model(str(tiny_model_factory(arch, 2)), causal_lm=False)
    fam = family_of(model.config)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    assert set(fam.lora_targets) <= names
    assert len(fam.attention_modules(model)) == 2
    qualified = [n for n, m in model.named_modules() if m in fam.attention_modules(model)]
    assert [int(attention_namespace().findall(n)[0]) for n in qualified] == [0, 1]


def test_unknown_family_is_refused_with_how_to_add(tiny_model_factory) -> None:
    from bellm.encoder import load_encoder

    with pytest.raises(UnsupportedModelError, match="'gemma' is not a supported decoder family.*bellm/families.py"):
        load_encoder(str(tiny_model_factory("gemma", 2)))


def test_family_of_without_a_model_type() -> None:
    with pytest.raises(UnsupportedModelError, match="None is not a supported"):
        family_of(object())


def test_unknown_family_cannot_be_trained(tiny_model_factory, tmp_path: Path) -> None:
    from bellm.profiles import build_config
    from bellm.training import train

    gemma = str(tiny_model_factory("gemma", 2))
    cfg = build_config("smoke", {"model": {"source": gemma}, "train": {"progress": False}})
    with pytest.raises(UnsupportedModelError, match="gemma"):
        train(cfg, tmp_path / "run")
