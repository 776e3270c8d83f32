"""Prompted tokenisation and the contract's truncation rule, on the real SmolLM2 tokenizer."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bellm.paths import STS_DIR
from bellm.prompts import PROMPTS, PromptError, resolve_prompt, split_template
from bellm.tokenize import encode_one, load_tokenizer_file


@pytest.fixture(scope="module")
def tok(embedded_dir: Path):
    return load_tokenizer_file(str(embedded_dir / "tokenizer.json"))


def _assert_prompt_whole(tok, template: str, text: str, max_length: int) -> str:
    """The encoding is a normal encoding of prefix + a prefix of the text + suffix; returns the kept text."""
    prefix, suffix = split_template(template)
    e = encode_one(tok, template, text, max_length)
    decoded = tok.decode(e.ids)
    assert len(e.ids) <= max_length
    assert decoded.startswith(prefix) and decoded.endswith(suffix), decoded
    kept = decoded[len(prefix) : len(decoded) - len(suffix)]
    assert text.startswith(kept)
    assert e.ids == tok.encode(prefix + kept + suffix).ids  # tokens exactly as an untruncated encoding
    return kept


def test_stsb_row_1107_keeps_the_closing_quote(tok) -> None:
    """STS-B test row 1107, the one 65-token sentence at max_length 64: the token `."` holds the sentence's full
    stop and the prompt's closing quote. Dropping ids lost the quote; cutting the text keeps it."""
    with open(STS_DIR / "stsb" / "test.tsv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    text = rows[1107][1]
    template = PROMPTS["prompteol"]
    full = tok.encode(template.format(text=text))
    assert len(full.ids) == 65 and '."' in full.tokens  # the boundary case this test is about
    kept = _assert_prompt_whole(tok, template, text, 64)
    assert kept == text[: len(kept)] and len(kept) < len(text)
    e = encode_one(tok, template, text, 64)
    assert e.truncated and len(e.ids) == 64
    tail = tok.encode(template.format(text="x")).ids[-4:]  # ' means', ' in', ' one', ' word:"' ...
    assert e.ids[-4:] == tail
    assert tok.decode(e.ids).endswith('" means in one word:"')


@pytest.mark.parametrize("template", [PROMPTS["prompteol"], PROMPTS["bellm"], "{text}", 'Q {{x}}: "{text}".'])
def test_truncation_rule_property(tok, template: str) -> None:
    rng = np.random.default_rng(0)
    words = ["cat", "sat.", '"quoted"', "naïve", "3.5%", "🙂", "end.", "x", ",", "(a)"]
    for _ in range(25):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 40))))
        prefix, suffix = split_template(template)
        need = len(tok.encode(prefix + suffix).ids) + 2
        max_length = int(rng.integers(need, need + 30))
        kept = _assert_prompt_whole(tok, template, text, max_length)
        e = encode_one(tok, template, text, max_length)
        assert e.truncated == (kept != text)
        a, b = e.span
        assert 0 <= a <= b <= len(e.ids) and (b > a or not kept)


def test_prompt_too_long_is_a_clear_error(tok) -> None:
    with pytest.raises(ValueError, match="too short for the prompt"):
        encode_one(tok, PROMPTS["prompteol"], "a long sentence " * 10, 8)


def test_template_needs_a_real_text_field() -> None:
    """`{{text}}` contains the substring but formats to a literal: every sentence would embed the same."""
    for bad in ("{{text}}", "no field", "{text} and {text}", "{text} {other}", "{text", "{0} {text}"):
        with pytest.raises(PromptError):
            resolve_prompt(bad)
    assert split_template('JSON {{"s": "{text}"}}') == ('JSON {"s": "', '"}')
    assert resolve_prompt("bellm") == PROMPTS["bellm"]


def test_config_rejects_a_literal_text_field() -> None:
    from bellm.config import ConfigError
    from bellm.profiles import build_config

    with pytest.raises(ConfigError, match="encoder.prompt"):
        build_config("smoke", ["encoder.prompt={{text}}"])


# Characters from many scripts: byte-level BPE splits most non-ASCII characters into several tokens that share
# one character's offsets (issue 29: the search started below m=1 and raised on ordinary text).
_ALPHABET = (
    [chr(c) for c in range(0x20, 0x7F)]  # ASCII
    + list("éüñçøßàœ")  # Latin-1 and beyond
    + [chr(c) for c in range(0x4E00, 0x4E00 + 200)]  # CJK
    + [chr(c) for c in range(0x0600, 0x0650)]  # Arabic
    + [chr(c) for c in range(0x0900, 0x0950)]  # Devanagari
    + [chr(c) for c in range(0x0300, 0x0320)]  # combining marks (also after spaces and at the start)
    + [chr(c) for c in range(0x1F600, 0x1F650)]  # emoji
    + ["\u200d", "\ufe0f", "👩\u200d💻", "🇧🇪", "\n", "\t", "\u00a0", "\U00010348", "\U0001F3FD"]
)


def _random_text(rng: np.random.Generator) -> str:
    n = int(rng.integers(1, 400))
    return "".join(_ALPHABET[int(i)] for i in rng.integers(0, len(_ALPHABET), size=n))


@pytest.mark.parametrize(("text", "max_length"), [
    ("😀" * 40, 64), ("这是一个关于自然语言处理的长段落，" * 9, 64), ("🎉🔥💯 tweet " * 50, 64),
    ("😀" * 40, 13), ("😀" * 40, 17),
])
def test_long_non_ascii_text_is_truncated_not_refused(tok, text: str, max_length: int) -> None:
    """Issue 29 item 1: several byte-level tokens end at one character; the text is cut, the prompt kept."""
    kept = _assert_prompt_whole(tok, PROMPTS["prompteol"], text, max_length)
    assert 0 < len(kept) < len(text)
    assert encode_one(tok, PROMPTS["prompteol"], text, max_length).truncated


@pytest.mark.parametrize("template", [PROMPTS["prompteol"], PROMPTS["bellm"], "{text}"])
def test_truncation_property_over_random_unicode(tok, template: str) -> None:
    """Every random Unicode string encodes (or is refused only when one cut point of text cannot fit), keeps the
    whole prompt, cuts the text at a token boundary and has at most max_length tokens."""
    rng = np.random.default_rng(29)
    prefix, suffix = split_template(template)
    alone = len(tok.encode(prefix + suffix).ids)
    encoded = 0
    for _ in range(150):
        text = _random_text(rng)
        max_length = int(rng.integers(alone + 1, alone + 80))
        try:
            kept = _assert_prompt_whole(tok, template, text, max_length)
        except ValueError:  # allowed only when not even the first cut point of the text fits
            full = tok.encode(prefix + text + suffix)
            c0, c1 = len(prefix), len(prefix) + len(text)
            cuts = sorted({b for _, b in full.offsets if c0 < b < c1})
            assert not cuts or len(tok.encode(prefix + text[: cuts[0] - c0] + suffix).ids) > max_length
            continue
        encoded += 1
        e = encode_one(tok, template, text, max_length)
        assert e.truncated == (kept != text)
        if e.truncated:  # cut at the end of one of the full encoding's tokens
            full = tok.encode(prefix + text + suffix)
            assert len(prefix) + len(kept) in {b for _, b in full.offsets}
    assert encoded >= 140  # a refusal needs max_length within a character's tokens of the prompt alone


def _old_encode_one(tok, template: str, text: str, max_length: int) -> list[int] | None:
    """The search before issue 29 (None where it raised): the fix must not change any id it produced."""
    prefix, suffix = split_template(template)
    enc = tok.encode(prefix + text + suffix)
    c0, c1, n = len(prefix), len(prefix) + len(text), len(enc.ids)
    if n <= max_length:
        return list(enc.ids)
    cuts = sorted({b for _, b in enc.offsets if c0 < b < c1})
    m = len(cuts) + 1 - (n - max_length)
    while m >= 1:
        short = tok.encode(prefix + text[: cuts[m - 1] - c0] + suffix)
        if len(short.ids) <= max_length:
            return list(short.ids)
        m -= 1
    return None


def test_old_outputs_are_unchanged_where_the_old_search_worked(tok) -> None:
    """Embeddings of exported models stay the same: wherever the old search returned, the ids are identical."""
    rng = np.random.default_rng(7)
    words = ["cat", "sat.", '"quoted"', "naïve", "3.5%", "🙂", "end.", "x", ",", "(a)", "中文", "é"]
    compared = 0
    for i in range(300):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 60)))) if i % 2 else _random_text(rng)
        max_length = int(rng.integers(12, 80))
        old = _old_encode_one(tok, PROMPTS["prompteol"], text, max_length)
        if old is not None:
            compared += 1
            assert encode_one(tok, PROMPTS["prompteol"], text, max_length).ids == old
    assert compared > 150


def test_lone_surrogate_is_an_input_error(tok) -> None:
    """A lone surrogate cannot be encoded to UTF-8: an InputError naming the position, not a tokenizer crash."""
    from bellm.errors import InputError

    with pytest.raises(InputError, match="surrogate"):
        encode_one(tok, PROMPTS["prompteol"], "ok \ud800 ok", 64)


# ---- length groups for training (`length_chunks`) ---------------------------------------------------------


def _brute_padded(lengths: list[int], max_chunks: int) -> int:
    """The least Σ rows·longest over every split of the sorted lengths into at most `max_chunks` groups."""
    import itertools

    s, n = sorted(lengths, reverse=True), len(lengths)
    best = None
    for k in range(1, min(max_chunks, n) + 1):
        for cuts in itertools.combinations(range(1, n), k - 1):
            b = [0, *cuts, n]
            cost = sum((b[i + 1] - b[i]) * s[b[i]] for i in range(k))
            best = cost if best is None else min(best, cost)
    return best


def test_length_chunks_are_the_least_padded_split() -> None:
    from bellm.tokenize import length_chunks

    rng = np.random.default_rng(7)
    for _ in range(200):
        n, k = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        lengths = rng.integers(1, 64, n)
        chunks = length_chunks(lengths, k)
        assert 1 <= len(chunks) <= k
        assert sorted(np.concatenate(chunks).tolist()) == list(range(n))  # every row once
        assert sum(len(c) * int(lengths[c].max()) for c in chunks) == _brute_padded(lengths.tolist(), k)


def test_length_chunks_edge_cases() -> None:
    from bellm.errors import InputError
    from bellm.tokenize import length_chunks

    one = length_chunks([5, 50, 12], 1)
    assert len(one) == 1 and sorted(one[0].tolist()) == [0, 1, 2]  # 1: the plain padded batch
    assert [c.tolist() for c in length_chunks([5, 50, 12, 48], 2)] == [[1, 3], [2, 0]]
    assert [c.tolist() for c in length_chunks([7, 7, 7], 4)] == [[0, 1, 2]]  # no gain, one group
    assert length_chunks([], 3) == []
    with pytest.raises(InputError, match="max_chunks"):
        length_chunks([3], 0)
