"""On-disk embedding cache keyed by (model fingerprint, sentence), so re-evaluating a model encodes
only the sentences it has not seen.

Layout: `<root>/<fingerprint>/<shard>.npy` (N, dim) float32 + `<shard>.json` (the N sentences, same
order). A shard is written atomically, npy first, json last, so a json marks a complete shard. Writers
never modify a shard, they add one, so concurrent evaluations of the same model cannot corrupt each
other (at worst a sentence is stored twice; the first shard read wins).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bellm.io import atomic_path, sha256_text, write_text_atomic
from bellm.paths import cache_dir

log = logging.getLogger(__name__)

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def fingerprint_dirname(fingerprint: str) -> str:
    """A filesystem-safe directory name for a fingerprint (hashed when it is not one already)."""
    fp = str(fingerprint)
    if _SAFE.fullmatch(fp) and fp not in {".", ".."}:
        return fp
    return sha256_text(fp)[:32]


class EmbeddingCache:
    """Append-only store of one model's sentence embeddings."""

    def __init__(self, fingerprint: str, root: Path | None = None) -> None:
        if not fingerprint:
            raise ValueError("an embedding cache needs a non-empty model fingerprint")
        self.dir = (root if root is not None else cache_dir("embeddings")) / fingerprint_dirname(fingerprint)

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []

    def lookup(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors for those of `sentences` that are stored (unreadable shards are skipped)."""
        wanted = set(sentences)
        found: dict[str, np.ndarray] = {}
        for meta in self._shards():
            if len(found) == len(wanted):
                break
            try:
                texts = json.loads(meta.read_text(encoding="utf-8"))
                hits = [i for i, t in enumerate(texts) if t in wanted and t not in found]
                if not hits:
                    continue
                arr = np.load(meta.with_suffix(".npy"), mmap_mode="r")
                if arr.ndim != 2 or arr.shape[0] != len(texts):
                    raise ValueError(f"shape {arr.shape} does not match {len(texts)} sentences")
            except (OSError, ValueError) as e:
                log.warning("skipping unreadable embedding cache shard %s: %s", meta, e)
                continue
            for i in hits:
                found[texts[i]] = np.array(arr[i], dtype=np.float32)
        return found

    def add(self, sentences: Sequence[str], embeddings: np.ndarray) -> Path | None:
        """Store a new shard; returns its json path (None when there is nothing to store)."""
        if len(sentences) == 0:
            return None
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(sentences):
            raise ValueError(f"{len(sentences)} sentences but embeddings of shape {emb.shape}")
        name = uuid.uuid4().hex
        with atomic_path(self.dir / f"{name}.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, emb)
        return write_text_atomic(self.dir / f"{name}.json", json.dumps(list(sentences), ensure_ascii=False))


def miss_order(texts: list[str], lengths: Callable[[list[str]], Sequence[int]] | None = None) -> list[str]:
    """`texts` longest first (token counts from `lengths`, else characters), ties by text: deterministic."""
    n = list(lengths(texts)) if lengths is not None else [len(t) for t in texts]
    return [t for _, t in sorted(zip(n, texts, strict=True), key=lambda p: (-p[0], p[1]))]


def encode_cached(
    encode: Callable[[list[str]], np.ndarray],
    sentences: Sequence[str],
    cache: EmbeddingCache | None,
    chunk_size: int = 1024,
    lengths: Callable[[list[str]], Sequence[int]] | None = None,
) -> tuple[np.ndarray, int]:
    """Embeddings (len(sentences), dim) for unique `sentences`, encoding only cache misses.

    Misses are encoded longest-first in chunks, each stored as its own shard as soon as it is done, so an
    interrupted evaluation (the full suite takes ~20 min for a 135M model on 2 CPUs) resumes where it stopped.
    `lengths` (texts -> token counts, the encoder's own tokenisation) makes the order exactly the encoder's
    batching order over *all* misses at once (`miss_order`): with `chunk_size` a multiple of the batch size,
    the batches are the global length-sorted ones and each chunk's own longest-first sort changes nothing.
    Without it, characters stand in for tokens. Returns (embeddings, number of sentences actually encoded).
    """
    hits = cache.lookup(sentences) if cache is not None else {}
    missing = miss_order([s for s in dict.fromkeys(sentences) if s not in hits], lengths)
    fresh: dict[str, np.ndarray] = {}
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start : start + chunk_size]
        emb = np.asarray(encode(chunk), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(chunk):
            raise ValueError(f"encoder returned shape {emb.shape} for {len(chunk)} sentences")
        if cache is not None:
            cache.add(chunk, emb)
        fresh.update(zip(chunk, emb, strict=True))
        if len(missing) > chunk_size:
            log.info("encoded %d/%d sentences", min(start + chunk_size, len(missing)), len(missing))
    vectors = {**hits, **fresh}
    dims = {v.shape[0] for v in vectors.values()}
    if len(dims) > 1:
        raise ValueError(f"embedding dimensions disagree between cache and encoder: {sorted(dims)} "
                         f"(clear {cache.dir if cache else 'the cache'})")
    out = np.zeros((len(sentences), dims.pop() if dims else 0), dtype=np.float32)
    for i, s in enumerate(sentences):
        out[i] = vectors[s]
    return out, len(missing)
