"""`evaluate(encoder, suite)`: STS scores of any encoder in the result schema outside tools read.

An encoder is any object with `.encode(texts, batch_size=...) -> (N, dim)` and `.fingerprint`: the
PyTorch `Encoder`, the ONNX runtime's encoder, or the MiniLM baseline. Sentences are deduplicated
across all tasks of a suite and encoded once (STS12-16 and STS-B share many), and embeddings are
cached on disk per model fingerprint, so re-evaluating the same model is nearly free.

Result schema (keep the names):
    {"suite", "model": fingerprint, "tasks": {key: {"spearman", "pearson", "n", "subsets", ["wmean"]}},
     "avg", "unseen_avg" (STS12-16 average, None without all five), "wmean", "max_pairs",
     "data_sha256": {file: sha}, "dedupe": {"sentences", "unique", "encoded"}, "seconds",
     "encoder": describe() when the encoder has one}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bellm.embcache import EmbeddingCache, encode_cached
from bellm.paths import STS_DIR, portable_path
from bellm.sts import Task, average, cosine_rows, load_suite, score_task, suite_name, unseen_average

log = logging.getLogger(__name__)


@runtime_checkable
class SupportsEncode(Protocol):
    """What `evaluate` needs of an encoder."""

    fingerprint: str

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray: ...


@dataclass(frozen=True)
class PairScores:
    """Per-pair predictions of one task (for plots), kept out of the JSON result."""

    cosine: np.ndarray
    gold: np.ndarray


def _fingerprint(encoder: Any) -> str:
    fp = getattr(encoder, "fingerprint", None)
    if not isinstance(fp, str) or not fp:
        raise TypeError(f"{type(encoder).__name__} has no string `.fingerprint`; evaluate() needs one to "
                        "record and cache results")
    if not callable(getattr(encoder, "encode", None)):
        raise TypeError(f"{type(encoder).__name__} has no `.encode(texts, batch_size=...)` method")
    return fp


EVAL_CHUNK = 1024  # sentences per cache shard (an interrupted evaluation resumes at a shard boundary)


def chunk_for(batch_size: int) -> int:
    """The cache chunk rounded up to whole batches, so no batch straddles two chunks."""
    return -(-EVAL_CHUNK // batch_size) * batch_size


def token_counter(encoder: Any) -> Callable[[list[str]], list[int]] | None:
    """texts -> token counts by the encoder's own `tokenize` (bellm encoders, the ONNX runtime), else None."""
    tokenize = getattr(encoder, "tokenize", None)
    if not callable(tokenize):
        return None
    return lambda texts: [len(e.ids) for e in tokenize(texts)]


def unique_sentences(tasks: Sequence[Task]) -> tuple[list[str], int]:
    """(unique sentences of all tasks in first-seen order, total sentence count before dedupe)."""
    seen: dict[str, None] = {}
    total = 0
    for task in tasks:
        s1, s2 = task.sentence_pairs()
        total += len(s1) + len(s2)
        seen.update(dict.fromkeys(s1))
        seen.update(dict.fromkeys(s2))
    return list(seen), total


def evaluate_with_scores(
    encoder: SupportsEncode,
    suite: str | Sequence[str | Path] = "full",
    max_pairs: int | None = None,
    batch_size: int = 32,
    cache: bool | EmbeddingCache = True,
    sts_dir: Path = STS_DIR,
) -> tuple[dict[str, Any], dict[str, PairScores]]:
    """`evaluate`, plus each task's per-pair cosines and gold scores (e.g. for the STS-B scatter plot)."""
    fingerprint = _fingerprint(encoder)
    start = time.perf_counter()
    tasks = load_suite(suite, max_pairs, sts_dir)
    sentences, total = unique_sentences(tasks)
    store = cache if isinstance(cache, EmbeddingCache) else (EmbeddingCache(fingerprint) if cache else None)
    log.info("evaluating %s on %s: %d sentences, %d unique", fingerprint, suite_name(suite), total, len(sentences))

    def encode(texts: list[str]) -> np.ndarray:
        return encoder.encode(texts, batch_size=batch_size)

    # One global longest-first order over the whole suite's unique sentences, in the encoder's own tokens, and
    # chunks of whole batches: the encoder then runs exactly the globally sorted batches (no per-chunk re-sort).
    emb, encoded = encode_cached(encode, sentences, store, chunk_size=chunk_for(batch_size),
                                 lengths=token_counter(encoder))
    row = {s: i for i, s in enumerate(sentences)}
    blocks: dict[str, dict] = {}
    scores: dict[str, PairScores] = {}
    for task in tasks:
        s1, s2 = task.sentence_pairs()
        cos = cosine_rows(emb[[row[s] for s in s1]], emb[[row[s] for s in s2]])
        blocks[task.name] = score_task(task, cos)
        scores[task.name] = PairScores(cos, task.gold)
    result: dict[str, Any] = {
        "suite": suite_name(suite),
        "model": fingerprint,
        "tasks": blocks,
        "avg": average([b["spearman"] for b in blocks.values()]),
        "unseen_avg": unseen_average(blocks),  # STS12-16 (None unless all five ran): the unseen-domain proxy
        "wmean": average([b.get("wmean", b)["spearman"] for b in blocks.values()]),
        "max_pairs": max_pairs,
        "data_sha256": {portable_path(f): sha for t in tasks for f, sha in t.files.items()},
        "dedupe": {"sentences": total, "unique": len(sentences), "encoded": encoded},
        "seconds": round(time.perf_counter() - start, 3),
    }
    describe = getattr(encoder, "describe", None)
    if callable(describe):
        result["encoder"] = describe()
    return result, scores


def evaluate(
    encoder: SupportsEncode,
    suite: str | Sequence[str | Path] = "full",
    max_pairs: int | None = None,
    batch_size: int = 32,
    cache: bool | EmbeddingCache = True,
    sts_dir: Path = STS_DIR,
) -> dict[str, Any]:
    """STS results of `encoder` on `suite` (`gate`, `full`, task keys or scored-pair files).

    `max_pairs` keeps N pairs of each task, evenly spaced over it (budgets, smoke runs; recorded in the result).
    `cache=False` encodes everything afresh and stores nothing.
    """
    return evaluate_with_scores(encoder, suite, max_pairs, batch_size, cache, sts_dir)[0]
