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
from bellm.tokenize import batches_by_length, encode_one, pad_batch, unique_texts


@torch.inference_mode()
def embed_texts(
    module: torch.nn.Module, tok: Tokenizer, template: str, texts: list[str], max_length: int,
    batch_size: int, device: torch.device,
) -> np.ndarray:
    """(N, H) L2-normalised embeddings in input order, module in eval mode (dropout off)."""
    uniq, inverse = unique_texts(texts)
    encs = [encode_one(tok, template, t, max_length) for t in uniq]
    out: np.ndarray | None = None
    was_training = module.training
    module.eval()
    try:
        for idx in batches_by_length(encs, batch_size):
            ids, mask, span = pad_batch([encs[i] for i in idx])
            emb = module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device),
                         torch.from_numpy(span).to(device))  # (b,H)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()
            if out is None:
                out = np.zeros((len(uniq), emb.shape[1]), dtype=np.float32)
            out[idx] = emb
    finally:
        module.train(was_training)
    assert out is not None
    return out[inverse]


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
