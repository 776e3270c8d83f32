"""CUDA-graph replay (`bellm.cuda_graphs`): the bucket padding it relies on is exact (checked on the CPU), the
forward has no host synchronisation, and on a GPU the replayed graph gives the eager result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bellm
from bellm.cuda_graphs import BATCH_BUCKETS, CudaGraphRunner, batch_bucket, length_bucket, pad_to_shape
from bellm.encoder import module_runner
from bellm.masks import build_masks
from bellm.tokenize import pad_batch

TEXTS = ["A man plays a guitar.", "Two dogs run through a field of tall grass near the river.", "Hi."]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_buckets() -> None:
    assert [batch_bucket(n) for n in (1, 2, 3, 32, 33, 512)] == [1, 2, 4, 32, 64, 512]
    with pytest.raises(ValueError):
        batch_bucket(BATCH_BUCKETS[-1] + 1)
    assert [length_bucket(s) for s in (1, 16, 17, 40)] == [16, 16, 32, 48]


@pytest.mark.parametrize("pooling", ["last", "mean_span", "last_mean_span"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_bucket_padding_changes_no_embedding(tiny_model_dir: Path, pooling: str, side: str) -> None:
    """What a graph runs: the batch with fully padded rows and pad columns added. The real rows must not move."""
    enc = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2, pooling=pooling)
    ids, mask, span = pad_batch(enc.tokenize(TEXTS), side=side)
    run = module_runner(enc.module, normalize=False)
    plain = run(ids, mask, span)
    rows, cols = batch_bucket(len(TEXTS)) + 4, length_bucket(ids.shape[1]) + 16
    padded = run(*pad_to_shape(ids, mask, span, rows, cols))
    assert padded.shape == (rows, plain.shape[1]) and np.isfinite(padded).all()
    np.testing.assert_allclose(padded[: len(TEXTS)], plain, atol=1e-5, rtol=0)


def test_masks_never_read_the_data_off_the_cpu() -> None:
    """Skipping the masks asks the data whether anything is padded: a host sync on a GPU (and a failed CUDA-graph
    capture). On a device whose data cannot be read (meta), the masks must simply be built."""
    mask = torch.ones(2, 5, dtype=torch.long, device="meta")
    masks = build_masks(mask, "sdpa", torch.float32)
    assert masks.causal is not None and masks.causal.shape == (2, 1, 5, 5)
    assert build_masks(torch.ones(2, 5, dtype=torch.long), "sdpa", torch.float32).causal is None  # CPU: skip


def test_runner_refuses_a_cpu_module(tiny_model_dir: Path) -> None:
    enc = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2)
    with pytest.raises(ValueError, match="CUDA"):
        CudaGraphRunner(enc.module)
    assert not isinstance(enc.runner(), CudaGraphRunner)  # the CPU path stays eager


@cuda
def test_graph_replay_equals_eager_on_cuda(tiny_model_dir: Path) -> None:
    enc = bellm.load_encoder(str(tiny_model_dir), bidirectional_layers=2, device="cuda")
    assert isinstance(enc.runner(), CudaGraphRunner)
    enc.cuda_graphs = False
    eager = enc.encode(TEXTS + [t.upper() for t in TEXTS], batch_size=4)
    enc.cuda_graphs = True
    graphed = enc.encode(TEXTS + [t.upper() for t in TEXTS], batch_size=4)
    again = enc.encode(TEXTS[:1])  # another shape, then a replay of the first
    np.testing.assert_allclose(graphed, eager, atol=1e-4, rtol=0)
    np.testing.assert_allclose(again, graphed[0], atol=1e-4, rtol=0)
    runner = enc.runner()
    assert runner.graphs and all(g is not None for g in runner.graphs.values())
