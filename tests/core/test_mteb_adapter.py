"""The mteb adapter speaks both mteb 2.x (DataLoader of {"text": [...]} batches, keyword-only metadata)
and 1.x (a list of sentences), without mteb installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bellm.mteb_adapter import MtebEncoder, as_mteb_model


class Recorder:
    fingerprint = "abc123"
    dim = 3

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], int]] = []

    def encode(self, texts, batch_size: int = 32, **_: object) -> np.ndarray:
        self.calls.append((list(texts), batch_size))
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)


def test_mteb2_batches_are_flattened_in_order() -> None:
    enc = Recorder()
    model = as_mteb_model(enc)
    loader = [{"text": ["a", "bb"]}, {"text": ["ccc"], "title": ["ignored"]}]  # what a DataLoader yields
    out = model.encode(loader, task_metadata=object(), hf_split="test", hf_subset="default",
                       prompt_type=None, batch_size=7)
    assert enc.calls == [(["a", "bb", "ccc"], 7)]
    np.testing.assert_array_equal(out[:, 0], [1, 2, 3])
    assert out.dtype == np.float32


def test_mteb1_sentence_lists_and_single_strings() -> None:
    enc = Recorder()
    model = MtebEncoder(enc, batch_size=5)
    assert model.encode(["x", "yy"], task_name="STS12").shape == (2, 3)
    assert model.encode("zzz").shape == (1, 3)
    assert enc.calls[0] == (["x", "yy"], 5)
    assert model.encode([], task_metadata=None).shape == (0, 3)


def test_non_text_inputs_are_rejected_clearly() -> None:
    with pytest.raises(TypeError, match="'text' list"):
        MtebEncoder(Recorder()).encode([{"image": [object()]}])


def test_similarity_is_cosine() -> None:
    model = MtebEncoder(Recorder())
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [0.0, 1.0], [-3.0, -4.0]])
    np.testing.assert_allclose(model.similarity(a, b), [[1, 0, -0.6], [0.6, 0.8, -1]], atol=1e-6)
    np.testing.assert_allclose(model.similarity_pairwise(a, b[:2]), [1.0, 0.8], atol=1e-6)


def test_name_and_revision_follow_the_fingerprint() -> None:
    model = MtebEncoder(Recorder())
    assert model.model_name == "bellm/abc123" and model.revision == "abc123"
    assert MtebEncoder(Recorder(), model_name="me/mine", revision="r1").revision == "r1"


@pytest.mark.skipif(importlib.util.find_spec("mteb") is not None, reason="mteb is installed")
def test_model_meta_is_none_without_mteb_and_can_be_set() -> None:
    model = MtebEncoder(Recorder())
    assert model.mteb_model_meta is None
    model.mteb_model_meta = "meta"
    assert model.mteb_model_meta == "meta"
