"""Prompted tokenisation shared by the PyTorch encoder and the torch-free ONNX runtime.

Imports only numpy and tokenizers, so `bellm.runtime` can use it. Both paths call `encode_batch`
and therefore feed the model exactly the same ids.

Truncation keeps the prompt whole: when `prompt.format(text=s)` is longer than `max_length` tokens,
tokens are dropped from the end of the sentence span (found by character offsets), so the prompt's
closing words, which last-token pooling reads, always survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from bellm.errors import InputError


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    span: tuple[int, int]  # [start, end) token indices of the sentence inside the prompt
    truncated: bool


def encode_one(tok: Tokenizer, template: str, text: str, max_length: int) -> Encoded:
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    prefix = template.split("{text}", 1)[0]
    full = template.format(text=text)
    enc = tok.encode(full)
    ids = list(enc.ids)
    c0, c1 = len(prefix), len(prefix) + len(text)
    inside = [i for i, (a, b) in enumerate(enc.offsets) if b > a and a < c1 and b > c0]
    start, end = (inside[0], inside[-1] + 1) if inside else (len(ids), len(ids))
    if len(ids) <= max_length:
        return Encoded(ids, (start, end), False)
    excess = len(ids) - max_length
    if excess > end - start - 1:
        raise InputError(
            f"max_length={max_length} is too short for the prompt: it needs {len(ids) - (end - start) + 1} tokens "
            "with at least one token of text"
        )
    ids = ids[: end - excess] + ids[end:]
    return Encoded(ids, (start, end - excess), True)


def pad_batch(
    encs: Sequence[Encoded], pad_id: int = 0, side: str = "right"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad encoded prompts. Returns input_ids (B,S), attention_mask (B,S), span_mask (B,S), all int64."""
    if side not in ("right", "left"):
        raise InputError(f"padding side must be 'right' or 'left', got {side!r}")
    seq = max(len(e.ids) for e in encs)
    ids = np.full((len(encs), seq), pad_id, dtype=np.int64)
    mask = np.zeros((len(encs), seq), dtype=np.int64)
    span = np.zeros((len(encs), seq), dtype=np.int64)
    for i, e in enumerate(encs):
        n = len(e.ids)
        off = 0 if side == "right" else seq - n
        ids[i, off : off + n] = e.ids
        mask[i, off : off + n] = 1
        span[i, off + e.span[0] : off + e.span[1]] = 1
    return ids, mask, span


def encode_batch(
    tok: Tokenizer, template: str, texts: Sequence[str], max_length: int, pad_id: int = 0, side: str = "right"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokenise prompted texts and pad them: input_ids, attention_mask, span_mask, each (B,S) int64."""
    return pad_batch([encode_one(tok, template, t, max_length) for t in texts], pad_id, side)


def batches_by_length(encs: Sequence[Encoded], batch_size: int) -> list[np.ndarray]:
    """Index batches over `encs`, longest first, so each batch pads little. Order is restored by the caller."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def as_text_list(texts: Sequence[str] | str) -> tuple[bool, list[str]]:
    """(was a single string, the texts as a list), each checked to be a str: shared input validation of
    the PyTorch encoder and the ONNX runtime."""
    single = isinstance(texts, str)
    if not single and not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    items = [texts] if single else list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    return single, items


def unique_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Deduplicate: (unique texts in first-seen order, inverse index so unique[inv] == texts)."""
    seen: dict[str, int] = {}
    inv = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inv[i] = seen.setdefault(t, len(seen))
    return list(seen), inv


def load_tokenizer_file(path: str) -> Tokenizer:
    """A `tokenizers.Tokenizer` with padding and truncation off: bellm pads and truncates itself."""
    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    return tok
