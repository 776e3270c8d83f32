"""Pooling token states into one sentence vector. Pure tensor functions."""

from __future__ import annotations

import torch

from bellm.contract import POOLINGS  # noqa: F401 - the names are part of the export contract


def last_token(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """State of the last real token, for left or right padding. hidden (B,S,H), mask (B,S) → (B,H)."""
    s = attention_mask.shape[1]
    pos = torch.arange(s, device=attention_mask.device)[None, :]  # (1,S)
    last = (pos * attention_mask.long()).amax(dim=1)  # (B,) index of the last real token (0 if none)
    idx = last[:, None, None].expand(-1, 1, hidden.shape[-1])  # (B,1,H)
    return hidden.gather(1, idx).squeeze(1)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over positions where mask is 1; zero vector for empty rows. (B,S,H),(B,S) → (B,H)."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B,S,1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def pool(
    hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str, span_mask: torch.Tensor | None = None
) -> torch.Tensor:
    if pooling == "last":
        return last_token(hidden, attention_mask)
    if pooling == "mean":
        return masked_mean(hidden, attention_mask)
    if pooling in ("mean_span", "last_mean_span"):
        if span_mask is None:
            raise ValueError(f"pooling={pooling!r} needs the sentence span mask")
        span = masked_mean(hidden, span_mask * attention_mask)  # (B,H)
        if pooling == "mean_span":
            return span
        return l2_normalize(last_token(hidden, attention_mask)) + l2_normalize(span)  # (B,H), equal weights
    raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=eps)
