"""Training data: loading, a seeded and resumable batch order mixing pairs and triplets, tokenisation.

Every optimizer step takes one *global* batch of one kind (all scored pairs or all triplets) of
`batch_size × world_size × grad_accum` items. The order of an epoch is a pure function of
(seed, epoch), so a run resumes from `DataPosition(epoch, index)` without saving any sampler state,
and every rank derives the same plan and takes its own slice of each micro-batch.
Tokenisation goes through `bellm.tokenize`, exactly like inference and the ONNX runtime.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from tokenizers import Tokenizer

from bellm.config import ConfigError, DataConfig
from bellm.data import Pairs, Triplets, load_pairs, load_triplets
from bellm.leakage import filter_pairs, filter_triplets, held_out
from bellm.tokenize import encode_one, length_chunks, pad_batch

Kind = Literal["pairs", "triplets"]


def normalize_scores(scores: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] so files with different score ranges mix (CoSENT only uses the order)."""
    lo, hi = float(np.min(scores)), float(np.max(scores))
    if hi == lo:
        return np.ones_like(scores, dtype=np.float64)
    return (scores - lo) / (hi - lo)


@dataclass(frozen=True)
class TrainData:
    """All training examples, concatenated over files; pair scores normalised per file."""

    s1: list[str]
    s2: list[str]
    labels: np.ndarray  # (P,) float64 in [0, 1]
    anchor: list[str]
    positive: list[str]
    negative: list[str]
    files: list[dict[str, Any]]  # {"kind", "path", "sha256", "rows"} per file, for bellm.json

    @property
    def n_pairs(self) -> int:
        return len(self.s1)

    @property
    def n_triplets(self) -> int:
        return len(self.anchor)


def load_train_data(cfg: DataConfig) -> TrainData:
    """Read every configured pair and triplet file (with the configured row caps)."""
    # Row caps apply after the held-out filter: a capped head of STS-B train is all STS12-16 pairs.
    filtering = cfg.exclude_held_out
    pairs: list[Pairs] = [load_pairs(p, None if filtering else cfg.max_train_pairs) for p in cfg.train_pairs]
    trips: list[Triplets] = [load_triplets(p, None if filtering else cfg.max_train_triplets)
                             for p in cfg.train_triplets]
    if not pairs and not trips:
        raise ConfigError("no training data: set data.train_pairs and/or data.train_triplets")
    dropped_p, dropped_t = [0] * len(pairs), [0] * len(trips)
    if filtering:
        index = held_out()
        pairs, dropped_p = _unzip([filter_pairs(p, index) for p in pairs])
        trips, dropped_t = _unzip([filter_triplets(t, index) for t in trips])
        pairs = [p.head(cfg.max_train_pairs) if cfg.max_train_pairs else p for p in pairs]
        trips = [t.head(cfg.max_train_triplets) if cfg.max_train_triplets else t for t in trips]
    files = [{"kind": "pairs", "path": p.source, "sha256": p.sha256, "rows": len(p), "held_out_dropped": d}
             for p, d in zip(pairs, dropped_p, strict=True)]
    files += [{"kind": "triplets", "path": t.source, "sha256": t.sha256, "rows": len(t), "held_out_dropped": d}
              for t, d in zip(trips, dropped_t, strict=True)]
    return TrainData(
        s1=[s for p in pairs for s in p.sentence1],
        s2=[s for p in pairs for s in p.sentence2],
        labels=(np.concatenate([normalize_scores(p.scores) for p in pairs if len(p)]) if any(map(len, pairs))
                else np.zeros(0)),
        anchor=[s for t in trips for s in t.anchor],
        positive=[s for t in trips for s in t.positive],
        negative=[s for t in trips for s in t.negative],
        files=files,
    )


def _unzip(items: list[tuple[Any, int]]) -> tuple[list[Any], list[int]]:
    return [x for x, _ in items], [d for _, d in items]


@dataclass(frozen=True)
class StepBatch:
    """One optimizer step's examples: `indices` (global_batch,) into the pairs or the triplets."""

    kind: Kind
    indices: np.ndarray


@dataclass(frozen=True)
class DataPosition:
    """Where the data stream stands: the next batch is `epoch_plan(...)[index]` of `epoch`."""

    epoch: int = 0
    index: int = 0


def epoch_plan(
    n_pairs: int, n_triplets: int, global_batch: int, seed: int, epoch: int, pair_share: float | None = None
) -> list[StepBatch]:
    """The shuffled batches of one epoch, pairs and triplets interleaved; the last partial batch is dropped.

    Without `pair_share` an epoch is every row of both kinds once, so the kinds mix in proportion to their
    rows. With it (and both kinds usable) an epoch is every pair batch once plus as many triplet batches as
    make pair batches that share of the steps; those triplets come, in order, from an endless stream of
    shuffled triplet epochs, so a short run still sees every pair and a spread sample of all triplets.
    """
    rng = np.random.default_rng([seed, epoch])
    batches: list[StepBatch] = []
    p_perm = rng.permutation(n_pairs)
    for i in range(0, n_pairs - global_batch + 1, global_batch):
        batches.append(StepBatch("pairs", p_perm[i : i + global_batch]))
    if pair_share is not None and _both_kinds(n_pairs, n_triplets, global_batch):
        n_trip = max(1, round(len(batches) * (1.0 - pair_share) / pair_share))
        rows = _triplet_stream(n_triplets, seed, epoch * n_trip * global_batch, n_trip * global_batch)
        batches += [StepBatch("triplets", rows[i : i + global_batch]) for i in range(0, len(rows), global_batch)]
    else:
        t_perm = rng.permutation(n_triplets)
        for i in range(0, n_triplets - global_batch + 1, global_batch):
            batches.append(StepBatch("triplets", t_perm[i : i + global_batch]))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _both_kinds(n_pairs: int, n_triplets: int, global_batch: int) -> bool:
    """Both kinds fill a global batch: only then is there a mix for `data.pair_share` to set."""
    return n_pairs >= global_batch and n_triplets >= global_batch


def _triplet_stream(n: int, seed: int, start: int, count: int) -> np.ndarray:
    """Rows `start .. start+count` of the endless concatenation of seeded permutations of range(n)."""
    first, last = start // n, (start + count - 1) // n
    # (count,) row indices; a permutation is a pure function of (seed, its number): resumable, same on every rank
    stream = np.concatenate([np.random.default_rng([seed, k, 1]).permutation(n) for k in range(first, last + 1)])
    return stream[start - first * n : start - first * n + count]


def check_batch_fits(data: TrainData, global_batch: int) -> None:
    """Fail early when no kind has enough rows for one global batch."""
    usable = [n for n in (data.n_pairs, data.n_triplets) if n >= global_batch]
    if not usable:
        raise ConfigError(
            f"global batch {global_batch} (batch_size × processes × grad_accum) exceeds the training data "
            f"({data.n_pairs} pairs, {data.n_triplets} triplets{_dropped_note(data)}); lower train.batch_size"
        )


def pair_share_note(data: TrainData, global_batch: int, pair_share: float | None) -> str | None:
    """Why `data.pair_share` has no effect here (one kind has less than a global batch), or None."""
    if pair_share is None or _both_kinds(data.n_pairs, data.n_triplets, global_batch):
        return None
    return (f"data.pair_share={pair_share} has nothing to mix: {data.n_pairs} pairs and {data.n_triplets} triplets "
            f"for a global batch of {global_batch}; every step takes the one kind there is")


def _dropped_note(data: TrainData) -> str:
    dropped = sum(f.get("held_out_dropped", 0) for f in data.files)
    return f" after dropping {dropped} held-out rows (data.exclude_held_out)" if dropped else ""


def batch_stream(
    data: TrainData, global_batch: int, seed: int, start: DataPosition, pair_share: float | None = None
) -> Iterator[tuple[StepBatch, DataPosition]]:
    """Endless (batch, position after it) from `start`; epochs reshuffle with their own seed."""
    epoch, index = start.epoch, start.index
    while True:
        plan = epoch_plan(data.n_pairs, data.n_triplets, global_batch, seed, epoch, pair_share)
        while index < len(plan):
            index += 1
            yield plan[index - 1], DataPosition(epoch, index)
        epoch, index = epoch + 1, 0


def micro_indices(batch: StepBatch, micro: int, rank: int, world: int, per_device: int) -> np.ndarray:
    """This rank's slice of micro-batch `micro`: ranks are contiguous, so gathering restores the order."""
    start = (micro * world + rank) * per_device
    return batch.indices[start : start + per_device]


def text_ids(texts: Sequence[str]) -> torch.Tensor:
    """A stable int64 per text (equal text ⇒ equal id, on every rank), to mask duplicate negatives."""
    return torch.tensor(
        [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little", signed=True) for t in texts],
        dtype=torch.int64,
    )


@dataclass(frozen=True)
class MicroBatch:
    """Tokenised texts of a micro-batch, groups stacked: pairs [s1; s2], triplets [a; p; n]."""

    kind: Kind
    input_ids: torch.Tensor  # (G·b, S)
    attention_mask: torch.Tensor  # (G·b, S)
    span_mask: torch.Tensor  # (G·b, S): the sentence's own tokens (span poolings pool over them)
    labels: torch.Tensor  # (b,) float32 pair labels (empty for triplets)
    ids: torch.Tensor  # (G·b,) int64 text ids
    size: int  # b
    # (rows, width) groups the forward runs separately, each on its own padded width (`length_chunks`)
    chunks: list[tuple[torch.Tensor, int]]

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def padded_tokens(self) -> int:
        """Positions the forward computes (real tokens + each chunk's padding): what a step's time follows."""
        return sum(len(rows) * w for rows, w in self.chunks)


def make_micro_batch(
    data: TrainData, kind: Kind, idx: np.ndarray, tok: Tokenizer, template: str, max_length: int,
    max_chunks: int = 1,
) -> MicroBatch:
    """Texts for `idx`, prompted, tokenised and right-padded exactly as the encoder does, and split by length
    into at most `max_chunks` forward groups (`train.length_chunks`)."""
    if kind == "pairs":
        groups = [[data.s1[i] for i in idx], [data.s2[i] for i in idx]]
        labels = torch.tensor(data.labels[idx], dtype=torch.float32)
    else:
        groups = [[data.anchor[i] for i in idx], [data.positive[i] for i in idx], [data.negative[i] for i in idx]]
        labels = torch.zeros(0, dtype=torch.float32)
    texts = [t for g in groups for t in g]
    encs = [encode_one(tok, template, t, max_length) for t in texts]
    ids, mask, span = pad_batch(encs)
    lengths = [len(e.ids) for e in encs]
    chunks = [(torch.from_numpy(rows), int(max(lengths[r] for r in rows)))
              for rows in length_chunks(lengths, max_chunks)]
    return MicroBatch(kind, torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(span), labels,
                      text_ids(texts), len(idx), chunks)
