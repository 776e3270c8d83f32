"""Dynamic batching: the texts of concurrent requests are queued and run through the model together.

Each request's (already tokenised) texts join one FIFO queue. A collector takes up to `max_batch_size` texts as
soon as the model is free, waiting (at most `max_wait_s` for the oldest text) only while other requests are
still being tokenised (`arriving`): a lone client pays no wait, a burst of concurrent requests shares one
forward pass. After a pass it also waits (at most `linger_s`) until as many requests have arrived as it
answered: clients that wait for an answer before sending more come back within a round trip, and their texts are
then planned together with the queued ones rather than two groups of clients taking turns. The texts taken are
sorted longest-first (as `OnnxEncoder.encode` does) and cut by length where the padding saved is worth more than
another forward pass (`plan_chunks`, with the per-pass cost measured on the running model,
`measure_call_overhead`); the chunk holding the oldest text runs and the rest go back to the head of the queue,
planned again with what arrives meanwhile. Chunks run on one worker thread (onnxruntime releases the GIL, so the
event loop keeps accepting requests meanwhile). Results go back to each request's future in its own order. The
model is padding-invariant (padded positions are masked out of attention and pooling), so a text's embedding
does not depend on its batch mates: a served result equals `OnnxEncoder.encode` of that request alone (tests
check ≤ 1e-5). This holds for int8 too: it quantises activations per token (`bellm.export.rowquant`), and every
published variant passes the export's batch/padding invariance gate (`bellm.export.invariance`).

`close()` stops accepting and drains what is queued before returning (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def plan_chunks(lengths: Sequence[int], max_tokens: int, overhead_tokens: float) -> list[list[int]]:
    """Indices sorted longest-first, cut into consecutive chunks of least modelled cost.

    A forward pass costs about `overhead_tokens` (the weights streamed once more, per-call work) plus its
    padded size, rows x longest (`measure_call_overhead` fits both on the running model). Splitting a
    batch by length pays when the padding it saves is worth more than the extra pass: one 40-token text
    among 17-token ones pads seven rows by 23 tokens (161) for one pass of ~16 here. Dynamic programming
    over the sorted order (an optimal grouping of sorted lengths is contiguous), with rows x longest <=
    `max_tokens` for every chunk of more than one text. O(n^2) for n texts (n <= max_batch_size).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sorted_len = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j sorted texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # chunk = sorted texts i..j-1, padded to sorted_len[i]
            padded = (j - i) * sorted_len[i]
            if padded > max_tokens and j - i > 1:
                break  # longer chunks (smaller i) only grow
            cost = best[i] + overhead_tokens + padded
            if cost <= best[j]:  # on a tie, the longer chunk (fewer passes)
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    return chunks[::-1]


# Shapes the start-up probe times: what one-sentence clients give a server (1-16 rows of 16-24 tokens); a
# subset of `bench/pass_cost.py`'s 24-shape grid, which it fits alongside (`probe_shapes_a_over_b_tokens`).
PROBE_SHAPES: tuple[tuple[int, int], ...] = ((1, 16), (4, 16), (8, 24), (16, 24))


def fit_pass_cost(times: Mapping[tuple[int, int], float]) -> tuple[float, float]:
    """(a, b) of t = a + b x rows x seq through timed (rows, seq) shapes, least squares on relative error
    (each shape weighted by 1/t, so the small passes, where a matters, count as much as the large ones)."""
    if len({r * s for r, s in times}) < 2:
        raise ValueError("fitting a + b x tokens needs shapes of at least two sizes")
    x = np.array([[1.0, r * s] for r, s in times])
    y = np.array(list(times.values()), dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    return float(a), float(b)


def measure_call_overhead(
    run_batch: RunBatch,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    shapes: Sequence[tuple[int, int]] = PROBE_SHAPES,
) -> float:
    """`overhead_tokens` for `plan_chunks`: the fixed cost of one forward pass in units of one padded token.

    Runs every shape of `shapes` once untimed, then times each `repeats` times, interleaved (a noisy moment
    hits all shapes alike), keeps each shape's best, fits t = a + b x tokens (`fit_pass_cost`) and returns
    a / b (≈ 16 on 2 AVX2 cores for SmolLM2-135M fp32, `bench/pass_cost.py`; a GPU's per-call cost dwarfs
    its per-token cost, so it hardly ever splits there). Fitting over the sizes a server runs matters: a
    two-point fit through a (1, 8) pass extrapolated from a tiny matrix product and read 8-13 on the same
    machine, which cut batches too often; this fit still reads 10-27 from one start to the next on a 2-core
    machine (BENCHMARKS.md), so pin `call_overhead_tokens` where the number matters.
    """
    best: dict[tuple[int, int], float] = {}
    batches = {sh: np.ones(sh, dtype=np.int64) for sh in shapes}
    for sh in shapes:  # untimed: the first pass of a shape grows onnxruntime's memory arena
        run_batch(batches[sh], batches[sh], batches[sh])
    for _ in range(repeats):
        for sh in shapes:
            t = clock()
            run_batch(batches[sh], batches[sh], batches[sh])
            best[sh] = min(best.get(sh, float("inf")), clock() - t)
    a, b = fit_pass_cost(best)
    return float(min(max(a, 0.0) / max(b, 1e-12), 1e6))


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
        *,
        overhead_tokens: float,
        linger_s: float = 0.0,
    ) -> None:
        self.run_batch, self.dim = run_batch, dim
        self.overhead_tokens = overhead_tokens  # a forward pass's fixed cost, in padded tokens (plan_chunks)
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self.linger_s = linger_s  # after a pass: how long to wait for the clients it answered
        self.metrics = metrics
        self._pending: deque[tuple[_Job, int]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._arriving = 0
        self._submitted = 0  # requests ever queued (the collector's linger counts arrivals with it)

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
        self._submitted += 1
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
        linger_until, expect = 0.0, 0  # after a pass: wait until `expect` requests were submitted or it is then
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wait(None)
                continue
            oldest = self._pending[0][0].enqueued
            while len(self._pending) < self.max_batch_size and not self._closing:
                now = time.monotonic()
                left = oldest + self.max_wait_s - now if self._arriving > 0 else 0.0
                if self._submitted < expect:  # clients just answered have not all come back yet
                    left = max(left, linger_until - now)
                if left <= 0:
                    break
                await self._wait(left)
            items = self._take()
            if not items:
                continue
            items = self._oldest_chunk(items)
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
            answered = 0
            for (job, i), row in zip(items, rows, strict=True):
                job.out[i] = row
                job.remaining -= 1
                if job.remaining == 0 and not job.future.done():
                    job.future.set_result(job.out)
                    answered += 1
            # Clients that wait for their answer before sending more come back within a round trip. Waiting
            # for them (until as many requests as were answered have arrived, at most `linger_s`) lets their
            # texts join the queued ones in one plan (a pool of 16 sorts into better-matched lengths than two
            # alternating groups of 8). A lone client loses nothing: the model had nothing else to do.
            linger_until, expect = time.monotonic() + self.linger_s, self._submitted + answered

    def _oldest_chunk(self, items: list[tuple[_Job, int]]) -> list[tuple[_Job, int]]:
        """The chunk of `plan_chunks` that holds the oldest text; the others go back to the head of the queue
        in arrival order, to be planned again with whatever arrives while this chunk runs (so a length
        outlier waits for company of its own size instead of padding the whole batch, and never starves:
        the oldest text always runs next)."""
        chunks = plan_chunks([len(job.encs[i].ids) for job, i in items], self.max_batch_tokens, self.overhead_tokens)
        first = next(c for c in chunks if 0 in c)
        chosen = set(first)
        self._pending.extendleft(reversed([it for k, it in enumerate(items) if k not in chosen]))
        self._gauge()
        return [items[k] for k in first]  # longest first, as planned

    def _forward(self, encs: list[Encoded]) -> np.ndarray:
        """(len(encs), dim): one padded forward pass (worker thread)."""
        return self.run_batch(*pad_batch(encs))
