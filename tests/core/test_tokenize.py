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
