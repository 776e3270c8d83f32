"""Dynamic batching: the texts of concurrent requests are queued and run through the model together.

Each request's (already tokenised) texts join one FIFO queue. A collector takes up to `max_batch_size`
texts as soon as the model is free, waiting (at most `max_wait_s` for the oldest text) only while other
requests are still being tokenised (`arriving`): a lone client pays no wait, a burst of concurrent requests
shares one forward pass. The batch is sorted longest-first (as
`OnnxEncoder.encode` does), splits them where the padded size would pass `max_batch_tokens`, and runs them
on one worker thread (onnxruntime releases the GIL, so the event loop keeps accepting requests meanwhile).
Results go back to each request's future in its own order. The model is padding-invariant (padded
positions are masked out of attention and pooling), so a text's embedding does not depend on its batch
mates: a served result equals `OnnxEncoder.encode` of that request alone (tests check ≤ 1e-5). This holds
for int8 too: it quantises activations per row and block (`MatMulNBits`), and every published variant passes
the export's batch/padding invariance gate (`bellm.export.invariance`).

`close()` stops accepting and drains what is queued before returning (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bellm.serve.metrics import Metrics
from bellm.tokenize import Encoded, pad_batch

RunBatch = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (ids, mask, span) (B,S) → (B, dim)


class QueueFull(RuntimeError):
    """More texts are waiting than `max_queue` allows (the server answers 429)."""


class ShuttingDown(RuntimeError):
    """The batcher is draining and takes no new work (the server answers 503)."""


@dataclass(eq=False)
class _Job:
    """One request's texts; `out` fills row by row as batches finish."""

    encs: Sequence[Encoded]
    future: asyncio.Future[np.ndarray]
    out: np.ndarray
    enqueued: float = field(default_factory=time.monotonic)
    remaining: int = 0


def split_longest_first(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices sorted longest-first, cut into chunks whose padded size (rows x longest) fits `max_tokens`
    (a single text longer than the budget still gets a chunk of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


class Batcher:
    """Queue texts from many requests; run them in shared, length-sorted batches on one worker thread."""

    def __init__(
        self,
        run_batch: RunBatch,
        dim: int,
        max_batch_size: int = 32,
        max_batch_tokens: int = 16384,
        max_wait_s: float = 0.002,
        max_queue: int = 4096,
        metrics: Metrics | None = None,
    ) -> None:
        self.run_batch, self.dim = run_batch, dim
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self.metrics = metrics
        self._pending: deque[tuple[_Job, int]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._arriving = 0

    # -- lifecycle
    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bellm-ort")
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="bellm-batcher")

    async def close(self) -> None:
        """Stop accepting work, finish every queued text, then stop the worker."""
        self._closing = True
        if self._task is None:
            return
        assert self._wakeup is not None
        self._wakeup.set()
        await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    @property
    def depth(self) -> int:
        """Texts waiting for a forward pass."""
        return len(self._pending)

    # -- submitting
    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Mark a request that is being tokenised: the collector may wait (≤ max_wait) to batch it with others."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            if self._wakeup is not None:
                self._wakeup.set()

    async def submit(self, encs: Sequence[Encoded]) -> np.ndarray:
        """Embeddings (N, dim) float32 of `encs`, in their order, computed in shared batches."""
        if self._closing or self._task is None:
            raise ShuttingDown("the server is shutting down")
        if not encs:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(self._pending) + len(encs) > self.max_queue:
            raise QueueFull(f"{len(self._pending)} texts are queued and this request adds {len(encs)}; "
                            f"the queue holds at most {self.max_queue}")
        loop = asyncio.get_running_loop()
        job = _Job(encs, loop.create_future(), np.empty((len(encs), self.dim), dtype=np.float32),
                   remaining=len(encs))
        self._pending.extend((job, i) for i in range(len(encs)))
        self._gauge()
        assert self._wakeup is not None
        self._wakeup.set()
        return await job.future  # cancelled with the request when the client goes away

    # -- the collector
    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._pending))

    async def _wait(self, timeout: float | None) -> None:
        assert self._wakeup is not None
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass

    def _take(self) -> list[tuple[_Job, int]]:
        taken: list[tuple[_Job, int]] = []
        while self._pending and len(taken) < self.max_batch_size:
            job, i = self._pending.popleft()
            if not job.future.done():  # a cancelled request's remaining texts are dropped
                taken.append((job, i))
        self._gauge()
        return taken

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wait(None)
                continue
            oldest = self._pending[0][0].enqueued
            while len(self._pending) < self.max_batch_size and self._arriving > 0 and not self._closing:
                left = oldest + self.max_wait_s - time.monotonic()
                if left <= 0:
                    break
                await self._wait(left)
            items = self._take()
            if not items:
                continue
            t0 = time.perf_counter()
            try:
                rows = await loop.run_in_executor(self._executor, self._forward, [j.encs[i] for j, i in items])
            except Exception as e:  # noqa: BLE001 - fail the requests in this batch, keep serving the rest
                for job, _ in items:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError(f"model run failed: {type(e).__name__}: {e}"))
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(len(items))
                self.metrics.batch_seconds.observe(time.perf_counter() - t0)
            for (job, i), row in zip(items, rows, strict=True):
                job.out[i] = row
                job.remaining -= 1
                if job.remaining == 0 and not job.future.done():
                    job.future.set_result(job.out)

    def _forward(self, encs: list[Encoded]) -> np.ndarray:
        """(len(encs), dim): longest-first chunks within the token budget, padded and run (worker thread)."""
        out = np.empty((len(encs), self.dim), dtype=np.float32)
        for chunk in split_longest_first([len(e.ids) for e in encs], self.max_batch_tokens):
            out[chunk] = self.run_batch(*pad_batch([encs[i] for i in chunk]))
        return out
