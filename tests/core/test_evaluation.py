"""evaluate(): result schema, sentence dedupe across tasks, the on-disk embedding cache, and the wiring of
pairs to embeddings (checked against an independent computation)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bellm.embcache import EmbeddingCache, encode_cached, fingerprint_dirname
from bellm.evaluation import evaluate, evaluate_with_scores
from bellm.sts import FULL_TASKS, load_task


class FakeEncoder:
    """Deterministic bag-of-character-trigrams encoder: similar sentences get similar vectors, so
    correlations are real numbers, and every call is recorded."""

    def __init__(self, fingerprint: str = "fake-v1", dim: int = 64) -> None:
        self.fingerprint = fingerprint
        self.dim = dim
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        t = f"  {text.lower()} "
        for i in range(len(t) - 2):
            v[zlib.crc32(t[i : i + 3].encode()) % self.dim] += 1.0
        return v

    def encode(self, texts, batch_size: int = 32, **_: object) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([self.vector(t) for t in texts])


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_result_schema_and_json() -> None:
    enc = FakeEncoder()
    res = evaluate(enc, "full", max_pairs=30)
    assert res["suite"] == "full" and res["model"] == "fake-v1" and res["max_pairs"] == 30
    assert tuple(res["tasks"]) == FULL_TASKS
    for name, block in res["tasks"].items():
        assert {"spearman", "pearson", "n", "subsets"} <= set(block), name
        assert block["n"] == 30
        assert isinstance(block["spearman"], float)
        task = load_task(name, max_pairs=30)  # each task's number is its own pairs' correlation
        cos = np.array([float(np.dot(enc.vector(a), enc.vector(b)) / np.linalg.norm(enc.vector(a))
                              / np.linalg.norm(enc.vector(b))) for a, b in zip(*task.sentence_pairs(), strict=True)])
        assert block["spearman"] == pytest.approx(100 * stats.spearmanr(cos, task.gold)[0], abs=0.5), name
    assert res["avg"] == pytest.approx(np.mean([b["spearman"] for b in res["tasks"].values()]))
    assert all(len(sha) == 64 for sha in res["data_sha256"].values())
    assert "data/sts/stsb/test.tsv" in res["data_sha256"]
    json.dumps(res, allow_nan=False)  # strict JSON: outside tools read it


def test_scores_match_an_independent_computation() -> None:
    enc = FakeEncoder()
    res, scores = evaluate_with_scores(enc, ["stsb", "sts13"], max_pairs=200, cache=False)
    task = load_task("stsb", max_pairs=200)
    a = np.stack([enc.vector(s) for s in task.sentence_pairs()[0]]).astype(np.float64)
    b = np.stack([enc.vector(s) for s in task.sentence_pairs()[1]]).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(scores["stsb"].cosine, cos, rtol=1e-6)
    np.testing.assert_array_equal(scores["stsb"].gold, task.gold)
    # (correlations from evaluate's own cosines: trigram counts make exact ties, which 1-ulp noise reorders)
    pred = scores["stsb"].cosine
    assert res["tasks"]["stsb"]["spearman"] == pytest.approx(100 * stats.spearmanr(pred, task.gold)[0])
    assert res["tasks"]["stsb"]["pearson"] == pytest.approx(100 * stats.pearsonr(cos, task.gold)[0])
    # trigram overlap tracks STS gold: a real, positive correlation (a broken pairing gives ~0)
    assert res["tasks"]["stsb"]["spearman"] > 30


def test_sentences_are_deduplicated_across_tasks_and_encoded_once() -> None:
    enc = FakeEncoder()
    res = evaluate(enc, "full", max_pairs=400, cache=False)
    encoded = [s for call in enc.calls for s in call]  # in chunks of 1024, each sentence once
    assert len(encoded) == len(set(encoded)) == res["dedupe"]["unique"] == res["dedupe"]["encoded"]
    assert res["dedupe"]["sentences"] == 2 * sum(b["n"] for b in res["tasks"].values())
    # STS-B test is built from STS12-16 sentences: the suite must share them
    assert res["dedupe"]["unique"] < res["dedupe"]["sentences"]


def test_cache_makes_reevaluation_encode_nothing(_home: Path) -> None:
    first = evaluate(FakeEncoder(), "gate", max_pairs=50)
    again = FakeEncoder()
    second = evaluate(again, "gate", max_pairs=50)
    assert again.calls == []
    assert second["dedupe"]["encoded"] == 0
    assert second["tasks"] == first["tasks"]
    assert any((_home / "cache" / "embeddings" / "fake-v1").glob("*.npy"))


def test_cache_encodes_only_missing_sentences() -> None:
    evaluate(FakeEncoder(), "gate", max_pairs=20)
    enc = FakeEncoder()
    res = evaluate(enc, "gate", max_pairs=30)
    assert len(enc.calls) == 1
    first20 = load_task("stsb_dev", max_pairs=20).sentence_pairs()
    assert not set(enc.calls[0]) & set(first20[0] + first20[1])
    assert res["dedupe"]["encoded"] == len(enc.calls[0]) > 0


def test_cache_is_per_fingerprint() -> None:
    evaluate(FakeEncoder("model-a"), "gate", max_pairs=10)
    other = FakeEncoder("model-b")
    evaluate(other, "gate", max_pairs=10)
    assert len(other.calls) == 1 and len(other.calls[0]) > 0


def test_unreadable_cache_shard_is_skipped_and_reencoded(tmp_path: Path) -> None:
    cache = EmbeddingCache("fp", root=tmp_path)
    shard = cache.add(["a", "b"], np.ones((2, 3)))
    assert shard is not None
    shard.with_suffix(".npy").write_bytes(b"garbage")
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.full((len(texts), 3), 2.0)

    emb, n = encode_cached(encode, ["a", "c"], cache)
    assert calls == [["a", "c"]] and n == 2
    np.testing.assert_array_equal(emb, np.full((2, 3), 2.0))


def test_cache_roundtrip_keeps_order_and_values(tmp_path: Path) -> None:
    cache = EmbeddingCache("fp", root=tmp_path)
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    cache.add(["w", "x", "y", "z"], vecs)
    got = cache.lookup(["z", "x", "nope"])
    assert set(got) == {"z", "x"}
    np.testing.assert_array_equal(got["z"], vecs[3])
    with pytest.raises(ValueError, match="3 sentences"):
        cache.add(["a", "b", "c"], vecs)


def test_dimension_mismatch_between_cache_and_encoder_is_an_error(tmp_path: Path) -> None:
    cache = EmbeddingCache("fp", root=tmp_path)
    cache.add(["a"], np.ones((1, 3)))
    with pytest.raises(ValueError, match="dimensions disagree"):
        encode_cached(lambda t: np.ones((len(t), 4)), ["a", "b"], cache)


def test_odd_fingerprints_get_safe_directory_names() -> None:
    assert fingerprint_dirname("abc123") == "abc123"
    odd = fingerprint_dirname("../../etc/passwd")
    assert "/" not in odd and ".." not in odd and len(odd) == 32


def test_encoder_without_fingerprint_is_rejected() -> None:
    class NoPrint:
        def encode(self, texts, batch_size=32):
            return np.zeros((len(texts), 2))

    with pytest.raises(TypeError, match="fingerprint"):
        evaluate(NoPrint(), "gate", max_pairs=5)


def test_collapsed_encoder_gives_none_scores() -> None:
    class Constant(FakeEncoder):
        def encode(self, texts, batch_size: int = 32, **_: object) -> np.ndarray:
            return np.ones((len(texts), 4), dtype=np.float32)

    res = evaluate(Constant("const"), "gate", max_pairs=20, cache=False)
    assert res["tasks"]["stsb_dev"]["spearman"] is None
    assert res["avg"] is None
    json.dumps(res, allow_nan=False)


def test_tiny_model_end_to_end(tiny_model_dir: Path) -> None:
    from bellm import load_encoder

    enc = load_encoder(str(tiny_model_dir), bidirectional_layers=2, pooling="mean", max_length=32)
    res = evaluate(enc, ["stsb", "sickr"], max_pairs=12, batch_size=8)
    assert res["model"] == enc.fingerprint
    assert res["encoder"]["bidirectional_layers"] == 2
    assert [b["n"] for b in res["tasks"].values()] == [12, 12]
    again = evaluate(enc, ["stsb", "sickr"], max_pairs=12, batch_size=8)
    assert again["dedupe"]["encoded"] == 0
    assert again["tasks"] == res["tasks"]


def test_misses_are_encoded_in_chunks_each_cached_at_once(tmp_path: Path) -> None:
    cache = EmbeddingCache("fp", root=tmp_path)
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted mid-way: the chunks done so far must survive
        return np.array([[len(t), 1.0] for t in texts])

    sentences = [f"s{'x' * i}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        encode_cached(encode, sentences, cache, chunk_size=4)
    assert [len(c) for c in calls] == [4, 4, 2]
    assert calls[0][0] == sentences[-1]  # longest first: less padding per batch
    assert len(cache.lookup(sentences)) == 8
    calls.clear()
    emb, n = encode_cached(lambda t: np.array([[len(s), 1.0] for s in t]), sentences, cache, chunk_size=4)
    assert n == 2
    np.testing.assert_array_equal(emb[:, 0], [len(s) for s in sentences])


class TokenizingFakeEncoder(FakeEncoder):
    """FakeEncoder with a `tokenize` whose token count is the number of words (not characters): the suite's
    encode order must follow it."""

    def tokenize(self, texts):
        from bellm.tokenize import Encoded

        return [Encoded(list(range(len(t.split()))), (0, 1), False) for t in texts]


def test_suite_is_encoded_in_one_global_token_length_order_of_whole_batches() -> None:
    enc = TokenizingFakeEncoder()
    evaluate(enc, "full", max_pairs=400, batch_size=48, cache=False)
    sent = [s for call in enc.calls for s in call]
    words = [len(s.split()) for s in sent]
    assert len(sent) == len(set(sent))  # each unique sentence once, in one pass over the whole suite
    assert words == sorted(words, reverse=True)  # globally longest-first in the encoder's tokens
    assert [c for c in enc.calls[:-1] if len(c) % 48] == []  # chunks are whole batches: no batch straddles two
    assert len(enc.calls) > 1
    # characters would order differently: the test proves the token counts were used
    assert [len(s) for s in sent] != sorted((len(s) for s in sent), reverse=True)


def test_suite_scores_equal_per_task_scores() -> None:
    whole = evaluate(TokenizingFakeEncoder(), "full", max_pairs=60, cache=False)
    for task in FULL_TASKS:
        alone = evaluate(TokenizingFakeEncoder(), [task], max_pairs=60, cache=False)
        assert alone["tasks"][task] == whole["tasks"][task], task


def test_miss_order_is_deterministic_longest_first() -> None:
    from bellm.embcache import miss_order

    texts = ["bb", "a", "ccc", "dd", "e"]
    assert miss_order(texts) == ["ccc", "bb", "dd", "a", "e"]
    assert miss_order(texts, lambda ts: [{"a": 9}.get(t, 1) for t in ts]) == ["a", "bb", "ccc", "dd", "e"]
