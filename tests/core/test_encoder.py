"""Encoder API: padding/batch invariance, pooling, prompts, truncation, dedupe, degenerate k=1, PEFT."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import bellm
from bellm.encoder import DegenerateConfigWarning
from bellm.pooling import last_token, masked_mean
from bellm.prompts import PROMPTS, resolve_prompt
from bellm.tokenize import encode_one

SHORT = "A man plays a guitar."
LONG = [
    "In a quiet village surrounded by mountains, the old baker rose before dawn every single day to prepare "
    "bread for the families who depended on him, and he never once complained about the cold.",
    "The committee postponed its decision until the next quarterly meeting because several members "
    "requested more time to review the financial statements and the auditors' detailed remarks.",
]


@pytest.fixture(scope="module")
def enc(tiny_model_dir: Path):
    return bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2, pooling="last")


@pytest.mark.parametrize("pooling", ["last", "mean", "mean_span", "last_mean_span"])
@pytest.mark.parametrize("k", [0, 2, "all"])
def test_batch_and_padding_invariance(tiny_model_dir: Path, pooling: str, k) -> None:
    enc = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=k, pooling=pooling, max_length=128)
    alone = enc.encode([SHORT], normalize=False)[0]
    for side in ("right", "left"):
        batch = enc.encode([LONG[0], SHORT, LONG[1]], normalize=False, padding_side=side, batch_size=3)
        np.testing.assert_allclose(batch[1], alone, atol=1e-4, rtol=0, err_msg=f"{side} {pooling} k={k}")


def test_padding_actually_happens_in_that_batch(enc) -> None:
    lens = [len(e.ids) for e in enc.tokenize([LONG[0], SHORT])]
    assert lens[0] > 2 * lens[1]


def test_fully_padded_rows_are_finite(enc) -> None:
    ids = torch.zeros(2, 5, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
    for pooling in ("last", "mean"):
        enc.module.pooling = pooling
        with torch.no_grad():
            out = enc.module(ids, mask)
        assert torch.isfinite(out).all()
    enc.module.pooling = "last"


def test_order_dedupe_and_single(enc) -> None:
    texts = ["b sentence", SHORT, "b sentence", LONG[0]]
    out = enc.encode(texts)
    assert out.shape == (4, enc.dim) and out.dtype == np.float32
    assert np.array_equal(out[0], out[2])
    np.testing.assert_allclose(out[1], enc.encode(SHORT), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert enc.encode([]).shape == (0, enc.dim)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        enc.encode(["ok", 3])


def test_k1_last_is_bit_identical_to_causal_and_warns(tiny_model_dir: Path) -> None:
    e0 = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=0)
    with pytest.warns(DegenerateConfigWarning, match="no effect"):
        e1 = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=1, pooling="last")
    texts = [SHORT, *LONG]
    assert np.array_equal(e0.encode(texts, normalize=False), e1.encode(texts, normalize=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateConfigWarning)
        e1m = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=1, pooling="mean")
    e0m = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=0, pooling="mean")
    assert not np.allclose(e0m.encode(texts), e1m.encode(texts), atol=1e-6)


def test_pooling_functions() -> None:
    h = torch.arange(24, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert torch.equal(last_token(h, right)[0], h[0, 1]) and torch.equal(last_token(h, left)[0], h[0, 3])
    assert torch.equal(masked_mean(h, right)[0], h[0, :2].mean(0))
    assert torch.equal(masked_mean(h, torch.zeros(2, 4))[0], torch.zeros(3))


def test_prompts_and_truncation_keep_prompt(enc) -> None:
    assert resolve_prompt("bellm") == PROMPTS["bellm"]
    with pytest.raises(ValueError):
        resolve_prompt("no placeholder")
    full = encode_one(enc.tokenizer, enc.template, LONG[0], 10_000)
    cut = encode_one(enc.tokenizer, enc.template, LONG[0], 24)
    assert len(cut.ids) == 24 and cut.truncated and not full.truncated
    tail = len(full.ids) - full.span[1]
    assert cut.ids[-tail:] == full.ids[-tail:]  # the prompt's ending survives
    assert cut.ids[: cut.span[1]] == full.ids[: cut.span[1]]
    with pytest.raises(ValueError, match="too short"):
        encode_one(enc.tokenizer, enc.template, LONG[0], 5)


def test_peft_wrapping_and_merge_keep_conversion(tiny_model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from bellm.backbone import BellmBackbone, SentenceEncoderModule
    from bellm.models import load_model

    base = load_model(str(tiny_model_dir), causal_lm=False)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    for n, p in peft_model.named_parameters():  # make the adapter non-trivial
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(0))
    wrapped = SentenceEncoderModule(BellmBackbone(peft_model, 2), "mean")
    ids = torch.randint(0, 49152, (1, 7), generator=torch.Generator().manual_seed(3))
    ids2 = ids.clone()
    ids2[0, -1] += 1
    mask = torch.ones_like(ids)
    with torch.no_grad():
        out_wrapped = wrapped(ids, mask)
        h1, h2 = wrapped.backbone(ids, mask, True)[1], wrapped.backbone(ids2, mask, True)[1]
        assert (h1[-1][0, 0] - h2[-1][0, 0]).abs().max() > 1e-6  # still bidirectional under PEFT
        assert torch.equal(h1[1][0, 0], h2[1][0, 0])  # lower layers still causal
        merged = SentenceEncoderModule(BellmBackbone(peft_model.merge_and_unload(), 2), "mean")
        torch.testing.assert_close(merged(ids, mask), out_wrapped, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_real_model_k1_last_equals_causal_and_batch_invariance() -> None:
    texts = [SHORT, *LONG]
    e0 = bellm.load_encoder("smollm2-135m", bidirectional_layers=0)
    with pytest.warns(DegenerateConfigWarning):
        e1 = bellm.load_encoder("smollm2-135m", bidirectional_layers=1)
    assert np.array_equal(e0.encode(texts, normalize=False), e1.encode(texts, normalize=False))
    e2 = bellm.load_encoder("smollm2-135m", bidirectional_layers=2)
    alone = e2.encode([SHORT])
    for side in ("left", "right"):
        np.testing.assert_allclose(e2.encode(texts, padding_side=side, batch_size=3)[0], alone[0], atol=1e-4)


def test_unknown_encode_keywords_raise_type_error(enc) -> None:
    """`encode(texts, normalise=False)` (a typo) used to be swallowed and return normalised vectors."""
    with pytest.raises(TypeError, match="normalise"):
        enc.encode(["x"], normalise=False)
    assert enc.encode(["x"], show_progress=False).shape == (1, enc.dim)


def test_fingerprint_covers_dtype_and_code(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedding cache is keyed by the fingerprint: it must change with the weights' dtype and with the
    encoding code, or a bf16 model (or a fixed bug) would reuse fp32 (or buggy) cached embeddings."""
    import bellm.provenance as prov

    fp32 = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    bf16 = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2, dtype="bfloat16")
    assert fp32.describe() == bf16.describe() and fp32.fingerprint != bf16.fingerprint
    before = fp32.fingerprint
    monkeypatch.setattr(prov, "code_fingerprint", lambda modules=None: "other-code")
    assert fp32.fingerprint != before


def test_keep_layers_drops_the_top_layers_and_keeps_the_norm(tiny_model_dir: Path) -> None:
    """keep_layers=ℓ equals the full model's state after layer ℓ through the final norm (k counted from the top)."""
    import torch

    from bellm.encoder import load_encoder

    full = load_encoder(str(tiny_model_dir), bidirectional_layers=0, pooling="last")
    cut = load_encoder(str(tiny_model_dir), bidirectional_layers=0, pooling="last", keep_layers=2)
    assert cut.num_layers == 2 and full.num_layers == 4
    ids = torch.tensor([[5, 6, 7, 8]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        _, states = full.module.backbone(ids, mask, output_hidden_states=True)
        dec = full.module.backbone.decoder
        want = dec.norm(states[1])[:, -1]  # (1,H) after layer 2 of 4
        got = cut.module(ids, mask)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    bidir = load_encoder(str(tiny_model_dir), bidirectional_layers=1, pooling="mean", keep_layers=3)
    assert bidir.module.backbone.flags == [False, False, True]
    with pytest.raises(ValueError, match="keep_layers"):
        load_encoder(str(tiny_model_dir), keep_layers=5)
