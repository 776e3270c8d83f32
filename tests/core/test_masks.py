"""Mask logic and layer conversion: the property tests of the BeLLM conversion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bellm.backbone import BellmBackbone
from bellm.masks import bidirectional_flags, build_masks, position_ids_from_mask, resolve_k, visibility
from bellm.models import load_model

FAMILIES = ["llama", "mistral", "qwen2", "qwen3"]


def test_flags_are_exactly_the_last_k() -> None:
    assert bidirectional_flags(5, 0) == [False] * 5
    assert bidirectional_flags(5, 2) == [False, False, False, True, True]
    assert resolve_k("all", 5) == 5 and resolve_k("3", 5) == 3
    for bad in (-1, 6, "some", True):
        with pytest.raises(ValueError):
            resolve_k(bad, 5)


def test_visibility_respects_padding_and_never_empty() -> None:
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 0]])
    causal = visibility(mask, causal=True)[:, 0]
    bidir = visibility(mask, causal=False)[:, 0]
    # real queries never see pads; bidirectional real queries see later real tokens
    assert not causal[0, 0, 1] and bidir[0, 0, 1]
    assert not bidir[0, 0, 2] and not bidir[1, 1, 0]
    # every row has at least one visible key (no NaN softmax), also for a fully padded sequence
    assert causal.any(-1).all() and bidir.any(-1).all()
    assert torch.equal(position_ids_from_mask(mask[1:2]), torch.tensor([[0, 0, 1]]))


def test_eager_masks_are_additive() -> None:
    m = build_masks(torch.tensor([[1, 0]]), "eager", torch.float32)
    assert m.causal.dtype == torch.float32 and m.causal[0, 0, 0, 1] < -1e30 and m.causal[0, 0, 0, 0] == 0
    assert build_masks(torch.ones(1, 3, dtype=torch.long), "sdpa", torch.float32).causal is None
    assert build_masks(torch.ones(1, 3, dtype=torch.long), "sdpa", torch.float32, allow_skip=False).causal is not None


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_layers_below_l_minus_k_stay_causal(tiny_model_factory, family: str, impl: str) -> None:
    path: Path = tiny_model_factory(family, 4)
    k = 2
    plain = load_model(str(path), attn_implementation=impl, causal_lm=False)
    conv = BellmBackbone(load_model(str(path), attn_implementation=impl, causal_lm=False), k)
    causal = BellmBackbone(load_model(str(path), attn_implementation=impl, causal_lm=False), 0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 49152, (2, 9), generator=g)
    mask = torch.ones_like(ids)
    ids2 = ids.clone()
    ids2[:, -1] = (ids2[:, -1] + 7) % 49152  # change only the last token
    with torch.no_grad():
        _, st_conv = conv(ids, mask, output_hidden_states=True)
        _, st_conv2 = conv(ids2, mask, output_hidden_states=True)
        _, st_causal = causal(ids, mask, output_hidden_states=True)
        _, st_causal2 = causal(ids2, mask, output_hidden_states=True)
        ref = plain(ids, attention_mask=mask, output_hidden_states=True).hidden_states  # embeddings + each layer
    L = len(st_conv)
    for i in range(L - k):  # unconverted layers: identical to the plain model
        assert torch.equal(st_conv[i], st_causal[i]), i
        torch.testing.assert_close(st_conv[i], ref[i + 1], rtol=0, atol=1e-6)
    for i in range(L - k, L):  # converted layers: position 0 sees the changed last token
        assert (st_conv[i][:, 0] - st_conv2[i][:, 0]).abs().max() > 1e-6, i
    for i in range(L):  # the causal model never lets position 0 see the future
        assert torch.equal(st_causal[i][:, 0], st_causal2[i][:, 0]), i


@pytest.mark.parametrize("family", FAMILIES)
def test_k0_equals_plain_transformers(tiny_model_factory, family: str) -> None:
    path = tiny_model_factory(family, 4)
    plain = load_model(str(path), causal_lm=False)
    bb = BellmBackbone(load_model(str(path), causal_lm=False), 0)
    ids = torch.randint(0, 49152, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding
    with torch.no_grad():
        ref = plain(ids, attention_mask=mask).last_hidden_state
        out = bb(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(out[real], ref[real], rtol=0, atol=1e-5)


def test_sdpa_none_mask_path_is_really_bidirectional(tiny_model_dir: Path) -> None:
    """With no padding SDPA gets mask=None; the converted layers must then not fall back to causal."""
    bb = BellmBackbone(load_model(str(tiny_model_dir), causal_lm=False), "all")
    attn = [layer.self_attn for layer in bb.decoder.layers]
    assert all(a.is_causal is False for a in attn)
    ids = torch.randint(0, 49152, (1, 6), generator=torch.Generator().manual_seed(2))
    ids2 = ids.clone()
    ids2[0, -1] += 1
    ones = torch.ones_like(ids)
    with torch.no_grad():
        assert (bb(ids, ones)[0, 0] - bb(ids2, ones)[0, 0]).abs().max() > 1e-6
        explicit = BellmBackbone(bb.decoder, "all", allow_mask_skip=False)
        torch.testing.assert_close(explicit(ids, ones), bb(ids, ones), rtol=0, atol=1e-5)
