"""The AnglE objective against hand-computed small cases (explicit loops over the formulas)."""

from __future__ import annotations

import math

import pytest
import torch

from bellm.config import LossConfig
from bellm.losses import (
    angle_loss,
    angle_scores,
    cosent_loss,
    in_batch_negative_loss,
    pair_objective,
    ranking_loss,
    reverse_in_batch_loss,
    triplet_objective,
)

E1 = [[1.0, 0.0, 0.5, 0.2], [0.3, 1.0, -0.2, 0.4], [0.9, -0.4, 0.1, 0.7]]
E2 = [[0.8, 0.3, 0.4, 0.0], [-0.5, 1.0, 0.6, 0.1], [0.2, 0.2, -1.0, 0.5]]
LABELS = [5.0, 1.0, 3.0]


def _cos(u: list[float], v: list[float]) -> float:
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return dot / (math.sqrt(sum(a * a for a in u)) * math.sqrt(sum(b * b for b in v)))


def _cosent_by_hand(scores: list[float], labels: list[float]) -> float:
    total = 1.0  # the exp(0) term
    for i in range(len(scores)):
        for j in range(len(scores)):
            if labels[i] > labels[j]:
                total += math.exp(scores[j] - scores[i])
    return math.log(total)


def _angle_by_hand(u: list[float], v: list[float]) -> float:
    h = len(u) // 2
    a, b, c, d = u[:h], u[h:], v[:h], v[h:]
    w2 = sum(c[k] ** 2 + d[k] ** 2 for k in range(h))
    z_norm = math.sqrt(sum(a[k] ** 2 + b[k] ** 2 for k in range(h)))
    ratio = z_norm / math.sqrt(w2)
    s = 0.0
    for k in range(h):
        re = (a[k] * c[k] + b[k] * d[k]) / w2
        im = (b[k] * c[k] - a[k] * d[k]) / w2
        s += re / ratio + im / ratio
    return abs(s)


def t(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64)


def test_cosent_matches_formula() -> None:
    tau = 20.0
    expected = _cosent_by_hand([tau * _cos(u, v) for u, v in zip(E1, E2, strict=True)], LABELS)
    got = cosent_loss(t(E1), t(E2), t(LABELS), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_cosent_only_uses_label_order() -> None:
    a = cosent_loss(t(E1), t(E2), t(LABELS))
    b = cosent_loss(t(E1), t(E2), t([1.0, 0.0, 0.5]))  # same order, [0, 1] range
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_ranking_loss_without_ordered_pairs_is_log1() -> None:
    assert ranking_loss(t([0.3, -2.0]), t([1.0, 1.0])).item() == pytest.approx(0.0, abs=1e-12)


def test_angle_scores_and_loss_match_formula() -> None:
    per_pair = [_angle_by_hand(u, v) for u, v in zip(E1, E2, strict=True)]
    assert angle_scores(t(E1), t(E2)).tolist() == pytest.approx(per_pair, rel=1e-6)
    tau = 20.0
    expected = _cosent_by_hand([tau * s for s in per_pair], LABELS)
    assert angle_loss(t(E1), t(E2), t(LABELS), tau).item() == pytest.approx(expected, rel=1e-5)


def test_angle_needs_even_dim() -> None:
    with pytest.raises(ValueError, match="even"):
        angle_scores(torch.ones(2, 3), torch.ones(2, 3))


def _ibn_by_hand(anchor, cands, tau, masked=()) -> float:
    total = 0.0
    for i, a in enumerate(anchor):
        logits = [tau * _cos(a, c) if (i, j) not in masked else -math.inf for j, c in enumerate(cands)]
        m = max(logits)
        lse = m + math.log(sum(math.exp(x - m) for x in logits))
        total += lse - logits[i]
    return total / len(anchor)


def test_in_batch_negatives_matches_formula() -> None:
    anchor, pos, neg = E1, E2, [[0.1, 0.1, 0.1, -0.3], [1.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.2, 0.2]]
    expected = _ibn_by_hand(anchor, pos + neg, 20.0)
    got = in_batch_negative_loss(t(anchor), t(pos), t(neg), tau=20.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # without hard negatives: candidates are the positives only
    assert in_batch_negative_loss(t(anchor), t(pos)).item() == pytest.approx(_ibn_by_hand(anchor, pos, 20.0), rel=1e-5)


def test_in_batch_negatives_masks_duplicate_texts() -> None:
    # Rows 0 and 2 share the positive text "p"; row 1's hard negative is anchor 0's own text "a0".
    anchor, pos, neg = E1, [E2[0], E2[1], E2[0]], [[0.1, 0.1, 0.1, -0.3], E1[0], [0.0, -1.0, 0.2, 0.2]]
    a_ids = torch.tensor([10, 11, 12])
    p_ids = torch.tensor([20, 21, 20])
    n_ids = torch.tensor([30, 10, 32])
    # candidate index: positives 0..2, negatives 3..5. Row 0: positive copy at 2, own text at 4.
    masked = {(0, 2), (0, 4), (2, 0)}
    expected = _ibn_by_hand(anchor, pos + neg, 20.0, masked)
    got = in_batch_negative_loss(t(anchor), t(pos), t(neg), 20.0, a_ids, p_ids, n_ids)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    unmasked = in_batch_negative_loss(t(anchor), t(pos), t(neg), 20.0)
    assert unmasked.item() > got.item()  # the false negatives were hurting


def test_reverse_in_batch_loss_matches_formula_and_masks_duplicates() -> None:
    # Each positive picks its anchor among all anchors: the forward formula with the roles swapped.
    assert reverse_in_batch_loss(t(E1), t(E2)).item() == pytest.approx(_ibn_by_hand(E2, E1, 20.0), rel=1e-5)
    # Anchors 0 and 2 share a text; positive 1 repeats anchor 0's text.
    a_ids, p_ids = torch.tensor([10, 11, 10]), torch.tensor([20, 10, 22])
    masked = {(0, 2), (2, 0), (1, 0), (1, 2)}
    got = reverse_in_batch_loss(t(E1), t(E2), 20.0, a_ids, p_ids)
    assert got.item() == pytest.approx(_ibn_by_hand(E2, E1, 20.0, masked), rel=1e-5)


def test_symmetric_ibn_averages_both_directions_and_is_off_by_default() -> None:
    neg = [[0.1, 0.1, 0.1, -0.3], [1.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.2, 0.2]]
    plain = triplet_objective(t(E1), t(E2), t(neg), LossConfig())
    sym = triplet_objective(t(E1), t(E2), t(neg), LossConfig(ibn_symmetric=True))
    forward, backward = _ibn_by_hand(E1, E2 + neg, 20.0), _ibn_by_hand(E2, E1, 20.0)
    assert plain["ibn"].item() == pytest.approx(forward, rel=1e-5)
    assert sym["ibn"].item() == pytest.approx(0.5 * (forward + backward), rel=1e-5)
    assert sym["loss"].item() - plain["loss"].item() == pytest.approx(sym["ibn"].item() - forward, rel=1e-5)


def test_combined_objectives_weight_their_terms() -> None:
    cfg = LossConfig(cosine_weight=0.5, ibn_weight=2.0, angle_weight=0.25)
    pair = pair_objective(t(E1), t(E2), t(LABELS), cfg)
    assert set(pair) == {"loss", "cosine", "angle"}
    assert pair["loss"].item() == pytest.approx(0.5 * pair["cosine"].item() + 0.25 * pair["angle"].item())
    neg = [[0.1, 0.1, 0.1, -0.3], [1.0, 1.0, 0.0, 0.0], [0.0, -1.0, 0.2, 0.2]]
    trip = triplet_objective(t(E1), t(E2), t(neg), cfg)
    cos_expected = _cosent_by_hand(
        [20 * _cos(a, b) for a, b in zip(E1 + E1, E2 + neg, strict=True)], [1, 1, 1, 0, 0, 0]
    )
    assert trip["cosine"].item() == pytest.approx(cos_expected, rel=1e-5)
    assert trip["ibn"].item() == pytest.approx(_ibn_by_hand(E1, E2 + neg, 20.0), rel=1e-5)
    total = 0.5 * trip["cosine"].item() + 2.0 * trip["ibn"].item() + 0.25 * trip["angle"].item()
    assert trip["loss"].item() == pytest.approx(total, rel=1e-6)


def test_zero_weight_terms_are_skipped_and_losses_are_differentiable() -> None:
    cfg = LossConfig(cosine_weight=1.0, ibn_weight=1.0, angle_weight=0.0)
    e1 = t(E1).requires_grad_()
    out = pair_objective(e1, t(E2), t(LABELS), cfg)
    assert "angle" not in out
    out["loss"].backward()
    assert e1.grad is not None and torch.isfinite(e1.grad).all() and e1.grad.abs().sum() > 0
