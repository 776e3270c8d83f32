"""Pooling: pure functions of token states and masks."""

from __future__ import annotations

import pytest
import torch

from bellm.contract import POOLINGS, SPAN_POOLINGS
from bellm.pooling import l2_normalize, last_token, masked_mean, pool


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2, 5, 4, generator=g)  # (B,S,H)
    mask = torch.tensor([[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]])  # right- and left-padded rows
    span = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 0]])  # the sentence inside the prompt
    return hidden, mask, span


def test_last_token_for_both_padding_sides() -> None:
    hidden, mask, _ = _batch()
    torch.testing.assert_close(last_token(hidden, mask), torch.stack([hidden[0, 3], hidden[1, 4]]))


def test_hybrid_is_the_sum_of_the_normalised_last_token_and_span_mean() -> None:
    hidden, mask, span = _batch()
    got = pool(hidden, mask, "last_mean_span", span)
    want = l2_normalize(torch.stack([hidden[0, 3], hidden[1, 4]])) + l2_normalize(
        torch.stack([hidden[0, 1:3].mean(0), hidden[1, 2:4].mean(0)]))
    torch.testing.assert_close(got, want)
    # neither part alone: it differs from last-token and from span-mean pooling after normalisation
    for other in ("last", "mean_span"):
        assert not torch.allclose(l2_normalize(got), l2_normalize(pool(hidden, mask, other, span)))


@pytest.mark.parametrize("pooling", SPAN_POOLINGS)
def test_span_poolings_need_the_span(pooling: str) -> None:
    hidden, mask, _ = _batch()
    with pytest.raises(ValueError, match="span mask"):
        pool(hidden, mask, pooling)


def test_every_contract_pooling_is_implemented() -> None:
    hidden, mask, span = _batch()
    for name in POOLINGS:
        assert pool(hidden, mask, name, span).shape == (2, 4)
    with pytest.raises(ValueError, match="unknown pooling"):
        pool(hidden, mask, "max", span)
    torch.testing.assert_close(masked_mean(hidden, torch.zeros(2, 5)), torch.zeros(2, 4))
