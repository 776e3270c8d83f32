"""Dev-set evaluation during training: STS Spearman (×100) of the module being trained.

Kept local and small so training does not depend on the full evaluation suite; it tokenises with
`bellm.tokenize` like inference and never touches an RNG, so it cannot perturb a resumed run.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from tokenizers import Tokenizer

from bellm.data import Pairs
from bellm.tokenize import embed_texts as shared_embed_texts
from bellm.tokenize import encode_one


def embed_texts(
    module: torch.nn.Module, tok: Tokenizer, template: str, texts: list[str], max_length: int,
    batch_size: int, device: torch.device | None = None,
) -> np.ndarray:
    """(N, H) L2-normalised embeddings in input order, module in eval mode (dropout off) during the forward."""
    from bellm.encoder import module_runner

    emb, _ = shared_embed_texts(texts, lambda t: encode_one(tok, template, t, max_length), module_runner(module),
                                0, batch_size)
    return emb


def dev_spearman(
    module: torch.nn.Module, tok: Tokenizer, template: str, pairs: Pairs, max_length: int,
    batch_size: int = 32, device: torch.device | None = None,
) -> float:
    """Spearman ×100 between pair cosines and gold scores."""
    device = device or next(module.parameters()).device
    emb = embed_texts(module, tok, template, pairs.sentence1 + pairs.sentence2, max_length, batch_size, device)
    n = len(pairs)
    cos = (emb[:n] * emb[n:]).sum(-1)  # (N,) unit vectors
    return float(spearmanr(cos, pairs.scores).statistic * 100.0)
