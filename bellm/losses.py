"""The AnglE training objective (Li & Li, 2023), which BeLLM trains with: pure functions of embeddings.

Three terms, each weighted by `LossConfig`:

* `cosent_loss`: CoSENT ranking over cosine similarities of scored pairs,
  `log(1 + Σ_{y_i > y_j} exp(τ·(cos_j − cos_i)))`;
* `in_batch_negative_loss`: cross-entropy of each anchor over all positives (and hard negatives) of the
  batch, with duplicates of the same text masked so a repeated sentence is never a false negative
  (`loss.ibn_symmetric` averages it with `reverse_in_batch_loss`, each positive over the anchors);
* `angle_loss`: the same ranking over AnglE's angle-difference score (complex division in half-split
  space), which keeps a gradient where cosine saturates.

A scored-pair batch uses cosine + angle; a triplet batch uses all three, its cosine/angle terms on
(anchor, positive) labelled 1 and (anchor, negative) labelled 0, as AnglE does for NLI.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bellm.config import LossConfig

NEG_INF = float("-inf")


def ranking_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CoSENT ranking: `log(1 + Σ_{labels_i > labels_j} exp(scores_j − scores_i))`. (N,),(N,) → ()."""
    diff = scores[None, :] - scores[:, None]  # (N,N): [i,j] = s_j − s_i
    higher = labels[:, None] > labels[None, :]  # (N,N): y_i > y_j
    terms = diff.masked_fill(~higher, NEG_INF).flatten()  # (N·N,)
    zero = torch.zeros(1, dtype=terms.dtype, device=terms.device)
    return torch.logsumexp(torch.cat([zero, terms]), dim=0)


def cosent_loss(emb1: torch.Tensor, emb2: torch.Tensor, labels: torch.Tensor, tau: float = 20.0) -> torch.Tensor:
    """CoSENT over pair cosines. emb1, emb2 (N,H); labels (N,) any range (only the order matters)."""
    cos = F.cosine_similarity(emb1.float(), emb2.float(), dim=-1)  # (N,)
    return ranking_loss(cos * tau, labels)


def angle_scores(emb1: torch.Tensor, emb2: torch.Tensor) -> torch.Tensor:
    """AnglE's score |Σ(Re + Im)| of z/w, with z = a+bi, w = c+di from the halves of each embedding.

    Follows the AnglE reference implementation: the elementwise numerator (ac+bd, bc−ad) is divided by
    |w|² = Σ(c²+d²), then rescaled by the norm ratio |w|/|z|. (N,H),(N,H) → (N,).
    """
    if emb1.shape[-1] % 2:
        raise ValueError(f"angle loss needs an even embedding size, got {emb1.shape[-1]}")
    a, b = emb1.float().chunk(2, dim=-1)  # (N,H/2) real, imaginary parts of z
    c, d = emb2.float().chunk(2, dim=-1)  # (N,H/2) of w
    w2 = (c**2 + d**2).sum(-1, keepdim=True)  # (N,1) |w|²
    re = (a * c + b * d) / w2  # (N,H/2)
    im = (b * c - a * d) / w2  # (N,H/2)
    norm_z = (a**2 + b**2).sum(-1, keepdim=True).sqrt()  # (N,1)
    norm_w = w2.sqrt()  # (N,1)
    ratio = norm_z / norm_w
    return ((re / ratio).sum(-1) + (im / ratio).sum(-1)).abs()  # (N,)


def angle_loss(emb1: torch.Tensor, emb2: torch.Tensor, labels: torch.Tensor, tau: float = 20.0) -> torch.Tensor:
    """CoSENT-style ranking over AnglE's angle score. emb1, emb2 (N,H); labels (N,)."""
    return ranking_loss(angle_scores(emb1, emb2) * tau, labels)


def in_batch_negative_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    tau: float = 20.0,
    anchor_ids: torch.Tensor | None = None,
    positive_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of anchor i over candidates [positives; negatives], target positive i.

    anchor, positive (N,H), negative (N,H) or None. `*_ids` (int64, one per text: equal ids = equal text)
    mask every candidate other than positive i that repeats positive i's or anchor i's text, so
    duplicates in a batch are not pushed apart (and an anchor never competes with its own copy).
    """
    cands = positive if negative is None else torch.cat([positive, negative])  # (M,H)
    cand_ids = None
    if positive_ids is not None:
        cand_ids = positive_ids if negative is None else torch.cat([positive_ids, negative_ids])  # (M,)
    return _pick_own(anchor, cands, tau, cand_ids, positive_ids, anchor_ids)


def _pick_own(
    queries: torch.Tensor,
    cands: torch.Tensor,
    tau: float,
    cand_ids: torch.Tensor | None,
    own_ids: torch.Tensor | None,
    query_ids: torch.Tensor | None,
) -> torch.Tensor:
    """Cross-entropy of query i over all candidates, target candidate i. queries (N,H), cands (M,H), M >= N.

    With `cand_ids` (M,) and `own_ids` (N,) (the text ids of the candidates and of each query's own candidate), a
    candidate other than i that repeats candidate i's text, or query i's (`query_ids`, optional), is masked.
    """
    q = F.normalize(queries.float(), dim=-1)
    c = F.normalize(cands.float(), dim=-1)
    logits = (q @ c.T) * tau  # (N,M)
    n = queries.shape[0]
    target = torch.arange(n, device=queries.device)  # (N,)
    if cand_ids is not None and own_ids is not None:
        dup = cand_ids[None, :] == own_ids[:, None]  # (N,M)
        if query_ids is not None:
            dup = dup | (cand_ids[None, :] == query_ids[:, None])
        dup[target, target] = False  # the true candidate stays
        logits = logits.masked_fill(dup, NEG_INF)
    return F.cross_entropy(logits, target)


def reverse_in_batch_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    tau: float = 20.0,
    anchor_ids: torch.Tensor | None = None,
    positive_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """The other direction of the in-batch loss: each positive picks its own anchor among the batch's anchors.

    The symmetric InfoNCE of CLIP and GTE's "improved contrastive loss": the same embeddings, a second ranking
    signal (which premise does this hypothesis belong to). anchor, positive (N,H). `*_ids` mask every other
    anchor whose text repeats anchor i's or positive i's, as `in_batch_negative_loss` does.
    """
    return _pick_own(positive, anchor, tau, anchor_ids, anchor_ids, positive_ids)


def pair_objective(
    emb1: torch.Tensor, emb2: torch.Tensor, labels: torch.Tensor, cfg: LossConfig
) -> dict[str, torch.Tensor]:
    """Weighted cosine + angle terms for scored pairs. Returns {"loss", "cosine", "angle"}."""
    parts: dict[str, torch.Tensor] = {}
    zero = emb1.new_zeros((), dtype=torch.float32)
    total = zero
    if cfg.cosine_weight > 0:
        parts["cosine"] = cosent_loss(emb1, emb2, labels, cfg.cosine_tau)
        total = total + cfg.cosine_weight * parts["cosine"]
    if cfg.angle_weight > 0:
        parts["angle"] = angle_loss(emb1, emb2, labels, cfg.angle_tau)
        total = total + cfg.angle_weight * parts["angle"]
    parts["loss"] = total
    return parts


def triplet_objective(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    cfg: LossConfig,
    anchor_ids: torch.Tensor | None = None,
    positive_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """In-batch negatives + cosine/angle on (a,p)=1, (a,n)=0. Returns {"loss", "ibn", "cosine", "angle"}."""
    n = anchor.shape[0]
    left = torch.cat([anchor, anchor])  # (2N,H)
    right = torch.cat([positive, negative])  # (2N,H)
    labels = torch.cat([anchor.new_ones(n), anchor.new_zeros(n)]).float()  # (2N,)
    parts = pair_objective(left, right, labels, cfg)
    if cfg.ibn_weight > 0:
        parts["ibn"] = in_batch_negative_loss(
            anchor, positive, negative, cfg.ibn_tau, anchor_ids, positive_ids, negative_ids
        )
        if cfg.ibn_symmetric:  # the mean of both directions, so ibn_weight keeps its scale
            back = reverse_in_batch_loss(anchor, positive, cfg.ibn_tau, anchor_ids, positive_ids)
            parts["ibn"] = 0.5 * (parts["ibn"] + back)
        parts["loss"] = parts["loss"] + cfg.ibn_weight * parts["ibn"]
    return parts
