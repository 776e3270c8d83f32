"""Dev-set evaluation during training: STS Spearman (×100) of the module being trained.

Kept local and small so training does not depend on the full evaluation suite; it tokenises with
`bellm.tokenize` like inference and never touches an RNG, so it cannot perturb a resumed run.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from tokenizers import Tokenizer

from bellm.config import RunConfig
from bellm.data import Pairs, load_pairs
from bellm.tokenize import embed_texts, encode_one


def curve_pairs(cfg: RunConfig) -> Pairs:
    """The in-training curve's dev pairs: `cfg.dev_curve_pairs` of them spread over the whole dev file (its head
    would be one genre: STS-B dev's first 625 rows are image captions)."""
    return load_pairs(cfg.data.dev_pairs).spread(cfg.dev_curve_pairs)


def embed_module(module: torch.nn.Module, tok: Tokenizer, template: str, texts: list[str], max_length: int,
                 batch_size: int) -> np.ndarray:
    """(N, H) L2-normalised embeddings of the module being trained, in input order, through the one text → batch
    → forward loop (`bellm.tokenize.embed_texts`), the module in eval mode (dropout off) during the forward."""
    from bellm.encoder import module_runner

    emb, _ = embed_texts(texts, lambda t: encode_one(tok, template, t, max_length), module_runner(module), 0,
                         batch_size)
    return emb


def dev_spearman(module: torch.nn.Module, tok: Tokenizer, template: str, pairs: Pairs, max_length: int,
                 batch_size: int = 32) -> float:
    """Spearman ×100 between pair cosines and gold scores."""
    emb = embed_module(module, tok, template, pairs.sentence1 + pairs.sentence2, max_length, batch_size)
    n = len(pairs)
    cos = (emb[:n] * emb[n:]).sum(-1)  # (N,) unit vectors
    return float(spearmanr(cos, pairs.scores).statistic * 100.0)
