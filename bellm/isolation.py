"""One trial at a time per process, with its own torch thread budget and seeds.

torch's RNG and its intra-op thread pool are process-global: two trials running concurrently in one
process (a thread pool, or a Dask worker with several threads) would draw from each other's random
stream and fight over the same threads, so their results would depend on scheduling. `trial_scope`
serialises trials within a process, sets the trial's thread budget and seeds every global RNG at the
start, so a trial gives the same numbers on any worker, alone or next to others.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_ONE_TRIAL_AT_A_TIME = threading.Lock()


@contextmanager
def trial_scope(seed: int, threads: int | None = None) -> Iterator[None]:
    """Hold this process for one trial: `threads` torch threads (None: unchanged), RNGs seeded with `seed`.

    The previous thread count is restored afterwards (the process may be the flow itself).
    """
    import torch

    from bellm.training.loop import seed_everything

    with _ONE_TRIAL_AT_A_TIME:
        before = torch.get_num_threads()
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be ≥ 1, got {threads}")
            torch.set_num_threads(threads)
        seed_everything(seed)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def worker_identity() -> dict[str, object]:
    """Where this code runs: host, process id, and the Dask worker address or Ray worker id if any."""
    ident: dict[str, object] = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        from distributed import get_worker

        ident["worker"] = get_worker().address
    except (ImportError, ValueError):
        pass
    ray = sys.modules.get("ray")  # only if the trial runs on Ray (never imported here)
    if ray is not None and "worker" not in ident and ray.is_initialized():
        ident["worker"] = f"ray:{ray.get_runtime_context().get_worker_id()}"
    return ident
