"""Prompted tokenisation shared by training, the PyTorch encoder and the torch-free ONNX runtime.

Imports only numpy and tokenizers (and `bellm.prompts`), so `bellm.runtime` can use it. Every path calls
`encode_one`, so the model always sees exactly the ids it was trained and evaluated with.

Truncation (the rule `bellm.contract.TRUNCATION_RULE`, stated language-neutrally in every exported
`bellm.json`) keeps every character of the prompt: when `prefix + text + suffix` is longer than
`max_length` tokens, the *text* is cut at the end of one of its tokens and the whole prompt is encoded
again. Dropping tokens from the id list instead would lose prompt characters whenever a token straddles
the end of the text (STS-B test row 1107: one token `."` holds the sentence's full stop and the prompt's
closing quote).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

from bellm.errors import InputError
from bellm.prompts import split_template


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    span: tuple[int, int]  # [start, end) token indices of the sentence inside the prompt
    truncated: bool


def _span(offsets: Sequence[tuple[int, int]], c0: int, c1: int, n: int) -> tuple[int, int]:
    """[start, end) of the tokens overlapping characters [c0, c1) (empty text: (n, n))."""
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < c1 and b > c0]
    return (inside[0], inside[-1] + 1) if inside else (n, n)


def encode_one(tok: Tokenizer, template: str, text: str, max_length: int) -> Encoded:
    """Token ids of `template.format(text=text)`, at most `max_length` of them (see the module docstring).

    The rule, step by step (offsets are Unicode code points of the prompted string):
    1. encode P = prefix + text + suffix; if it has <= max_length tokens, use it;
    2. cut points: the distinct end offsets e of its tokens with c0 < e < c1, where [c0, c1) are the
       text's characters; keeping m text tokens means cutting the text at the m-th cut point;
    3. start with m = (number of cut points + 1) - (tokens - max_length); if that is below 1 (byte-level BPE:
       several tokens end at one character, so there are fewer cut points than tokens), start instead with the
       largest m >= 1 that leaves at least tokens - max_length - 1 token ends e with cut_m < e < c1 (m = 1 if
       none does); then, while prefix + text[:cut_m - c0] + suffix encodes to more than max_length tokens,
       decrease m;
    4. m < 1 is an error (the prompt alone does not fit with one cut point of text).
    The fallback start only applies where the first start was below 1, which used to raise: every input that
    encoded before encodes to the same ids.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    check_unicode(text)
    prefix, suffix = split_template(template)
    enc = tok.encode(prefix + text + suffix)
    c0, c1 = len(prefix), len(prefix) + len(text)
    n = len(enc.ids)
    if n <= max_length:
        return Encoded(list(enc.ids), _span(enc.offsets, c0, c1, n), False)
    cuts = sorted({b for _, b in enc.offsets if c0 < b < c1})
    m = len(cuts) + 1 - (n - max_length)
    if m < 1 and cuts:
        m = _start_by_tokens(enc.offsets, cuts, c1, n - max_length - 1)
    while m >= 1:
        cut = text[: cuts[m - 1] - c0]
        short = tok.encode(prefix + cut + suffix)
        if len(short.ids) <= max_length:
            span = _span(short.offsets, c0, c0 + len(cut), len(short.ids))
            return Encoded(list(short.ids), span, True)
        m -= 1
    alone = len(tok.encode(prefix + suffix).ids)
    raise InputError(
        f"max_length={max_length} is too short for the prompt: it takes {alone} tokens without any text, and at "
        "least one token of text must fit"
    )


def _start_by_tokens(offsets: Sequence[tuple[int, int]], cuts: list[int], c1: int, drop: int) -> int:
    """The largest m >= 1 leaving at least `drop` token ends in (cuts[m-1], c1), or 1 (rule step 3's fallback)."""
    ends = sorted(b for _, b in offsets if cuts[0] < b < c1)  # token ends after the first cut point
    for m in range(len(cuts), 0, -1):
        if len(ends) - bisect_right(ends, cuts[m - 1]) >= drop:
            return m
    return 1


def check_unicode(text: str) -> None:
    """A lone surrogate (e.g. JSON `"\\ud800"`) has no UTF-8 form: refuse it as bad input, naming where it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"text is not valid Unicode: a lone surrogate {text[e.start]!r} at character {e.start}") \
            from None


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


def batches_by_length(encs: Sequence[Encoded], batch_size: int) -> list[np.ndarray]:
    """Index batches over `encs`, longest first, so each batch pads little. Order is restored by the caller."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_chunks(lengths: Sequence[int], max_chunks: int) -> list[np.ndarray]:
    """Row indices of at most `max_chunks` groups of one batch, longest rows first, that minimise the padded
    tokens Σ rows(c)·longest(c) when each group is padded to its own longest row.

    Why: a training batch holds texts of very different lengths (a Wikipedia premise of 50 tokens beside a
    12-token hypothesis), and one padded batch computes every row at the longest length; the encoder's
    embeddings do not depend on padding, so running the groups separately changes no embedding and skips the
    padding's compute (about half of an NLI batch's). Exact: a dynamic programme over the sorted lengths,
    O(max_chunks · n²), n = rows (tens)."""
    if max_chunks < 1:
        raise InputError(f"max_chunks must be >= 1, got {max_chunks}")
    ls = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-ls, kind="stable")
    s, n = ls[order], len(ls)  # s: lengths, longest first; a group [i, j) pads to s[i]
    if n == 0:
        return []
    k_max = min(max_chunks, n)
    inf = np.iinfo(np.int64).max
    cost = np.full((k_max + 1, n + 1), inf, dtype=np.int64)  # cost[k, j]: the first j rows in k groups
    cut = np.zeros((k_max + 1, n + 1), dtype=np.int64)  # where cost[k, j]'s last group starts
    cost[0, 0] = 0
    for k in range(1, k_max + 1):
        for j in range(k, n + 1):
            starts = np.arange(k - 1, j)  # the last group is [i, j)
            prev = cost[k - 1, starts]
            ok = prev < inf
            total = np.where(ok, prev + (j - starts) * s[starts], inf)
            best = int(np.argmin(total))
            cost[k, j], cut[k, j] = total[best], starts[best]
    k = int(np.argmin(cost[1:, n])) + 1  # fewest groups among the cheapest (argmin takes the first)
    bounds, j = [], n
    while k > 0:
        i = int(cut[k, j])
        bounds.append((i, j))
        j, k = i, k - 1
    return [order[i:j] for i, j in reversed(bounds)]


RunBatch = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # ids, mask, span (B,S) → (B,H)


def embed_encoded(
    encs: Sequence[Encoded],
    run_batch: RunBatch,
    batch_size: int = 32,
    padding_side: str = "right",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The one "encoded texts → padded batches → forward → (N, H) float32 in order" loop.

    Shared by the PyTorch encoder, training-time evaluation, export parity and the ONNX runtime; the
    forward (`run_batch`) is theirs, and normalises when they want it normalised.
    """
    out: np.ndarray | None = None
    for idx in batches_by_length(encs, batch_size):
        emb = np.asarray(run_batch(*pad_batch([encs[i] for i in idx], side=padding_side)), dtype=np.float32)
        if out is None:
            out = np.zeros((len(encs), emb.shape[1]), dtype=np.float32)
        out[idx] = emb  # (b,H)
        if on_batch is not None:
            on_batch(len(idx))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def embed_texts(
    texts: Sequence[str] | str,
    encode: Callable[[str], Encoded],
    run_batch: RunBatch,
    dim: int,
    batch_size: int = 32,
    padding_side: str = "right",
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Validated texts → deduplicated → encoded → embedded → in input order: ((N, dim) or (dim,), truncated count)."""
    single, items = as_text_list(texts)
    if not items:
        return np.zeros((0, dim), dtype=np.float32), 0
    uniq, inverse = unique_texts(items)
    encs = [encode(t) for t in uniq]
    out = embed_encoded(encs, run_batch, batch_size, padding_side, on_batch)[inverse]
    return (out[0] if single else out), sum(e.truncated for e in encs)


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
