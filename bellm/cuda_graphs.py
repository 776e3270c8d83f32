"""CUDA-graph replay of the encoder's forward, so PyTorch on a GPU is not bound by Python and launch overhead.

On a GPU the eager forward of the 28-layer encoder costs about the same 21-41 ms per batch at batch 1, 32, 128
and 512 (issue 28): hundreds of small kernel launches, each paid in Python, while the arithmetic of a batch of
32 takes well under a millisecond. A CUDA graph records the launches of one input shape once and replays them
with one call. Shapes are bucketed so a handful of graphs serve every batch: the batch is padded up to a power
of two with fully padded rows and the length up to a multiple of `LENGTH_STEP` with pad columns. That padding
is exact here because every mask is built from the attention mask (`bellm.masks`: real tokens never see pads,
a pad row sees only itself, positions count real tokens only), so a sentence's embedding does not depend on
what else is in its batch; the CPU tests check it on the padded shapes.

Requirements the forward meets for capture: no host synchronisation (masks are built on the device without
asking whether anything is padded, `bellm.masks.build_masks`), no data-dependent control flow, eval mode.
A shape whose capture fails is run eagerly (logged once), so a graph is a speed-up, never a new way to fail.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
import torch

from bellm.backbone import SentenceEncoderModule

log = logging.getLogger(__name__)

BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LENGTH_STEP = 16  # sequence lengths are padded up to a multiple of this
WARMUP_RUNS = 2  # eager runs on a side stream before capture (cuBLAS/cuDNN workspaces, lazy init)


def batch_bucket(n: int, buckets: tuple[int, ...] = BATCH_BUCKETS) -> int:
    """The smallest bucket holding `n` rows (n <= the largest bucket)."""
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"batch of {n} is larger than the largest bucket {buckets[-1]}")


def length_bucket(s: int, step: int = LENGTH_STEP) -> int:
    """`s` rounded up to a multiple of `step`."""
    return -(-s // step) * step


def pad_to_shape(ids: np.ndarray, mask: np.ndarray, span: np.ndarray, rows: int, cols: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B,S) int64 x3 → (rows,cols): extra rows fully padded, extra columns padding (mask 0, id 0)."""
    b, s = ids.shape
    out = tuple(np.zeros((rows, cols), dtype=np.int64) for _ in range(3))
    for src, dst in zip((ids, mask, span), out, strict=True):
        dst[:b, :s] = src
    return out  # type: ignore[return-value]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # static (rows,cols) int64 on the device
    output: torch.Tensor  # static (rows,H) in the module's dtype


class CudaGraphRunner:
    """A `bellm.tokenize.RunBatch` over an eval-mode module on CUDA: one captured graph per (batch bucket, length
    bucket), replayed with the batch copied into its static inputs. (B,S) int64 x3 → (B,H) float32."""

    def __init__(self, module: SentenceEncoderModule, normalize: bool = True) -> None:
        self.module = module.eval()
        self.normalize = normalize
        self.device = next(module.parameters()).device
        if self.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a module on a CUDA device, not {self.device}")
        self.weights = weights_key(module)  # captured kernels read these storages: a moved/cast module re-captures
        self.graphs: dict[tuple[int, int], _Graph | None] = {}  # None: capture failed, run eagerly
        self.pool = torch.cuda.graph_pool_handle()  # one memory pool: graphs replay one at a time
        self._lock = threading.Lock()  # static buffers: one batch at a time, whichever thread calls

    def __call__(self, ids: np.ndarray, mask: np.ndarray, span: np.ndarray) -> np.ndarray:
        top = BATCH_BUCKETS[-1]
        if ids.shape[0] > top:  # larger than any bucket: in slices of the largest
            return np.concatenate([self(ids[i:i + top], mask[i:i + top], span[i:i + top])
                                   for i in range(0, ids.shape[0], top)])
        b, s = ids.shape
        shape = (batch_bucket(b), length_bucket(s))
        padded = pad_to_shape(ids, mask, span, *shape)
        with self._lock, torch.inference_mode():
            if shape not in self.graphs:
                self.graphs[shape] = self._capture(shape)
            g = self.graphs[shape]
            if g is None:
                out = self.module(*(torch.from_numpy(x).to(self.device) for x in padded))  # (rows,H)
            else:
                for static, x in zip(g.inputs, padded, strict=True):
                    static.copy_(torch.from_numpy(x), non_blocking=False)
                g.graph.replay()
                out = g.output
            emb = out[:b].float()  # (B,H)
            if self.normalize:
                emb = torch.nn.functional.normalize(emb, dim=-1)
            return emb.cpu().numpy()

    def _capture(self, shape: tuple[int, int]) -> _Graph | None:
        rows, cols = shape
        inputs = tuple(torch.zeros(shape, dtype=torch.long, device=self.device) for _ in range(3))
        inputs[1].fill_(1)  # a valid all-real batch for the warm-up runs (captured kernels do not depend on it)
        try:
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.module(*inputs)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                output = self.module(*inputs)  # (rows,H)
            return _Graph(graph, inputs, output)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - any capture failure falls back to eager for this shape
            log.warning("CUDA graph capture of batch %d x length %d failed (%s: %s); running it eagerly",
                        rows, cols, type(e).__name__, str(e)[:200])
            return None


def weights_key(module: torch.nn.Module) -> tuple[tuple[int, torch.dtype], ...]:
    """Where and in which dtype each parameter lives: a graph replays reads of exactly these storages."""
    return tuple((p.data_ptr(), p.dtype) for p in module.parameters())
