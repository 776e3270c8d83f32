"""Where a sweep's trials run: one place that turns `--runner/--address` into a Prefect task runner.

* `sequential` (default): in the flow's own process, one trial after another.
* `dask`: prefect-dask's `DaskTaskRunner`. With `address` (`tcp://host:8786`) it connects to a running
  scheduler; without, it starts a `LocalCluster` of `workers` processes (one thread each) for the sweep.
* `ray`: prefect-ray's `RayTaskRunner`. With `address` (`ray://host:10001`) it connects to a running
  cluster; without, it starts a local Ray with `workers` CPUs.

Each trial owns its worker process while it runs (`bellm.isolation.trial_scope`: a process-wide lock, its
own torch thread budget and seeds), so no two trials share torch's RNG or thread pool. Results are cached
in the shared registry (the task's result storage), so a trial finished on one worker is a cache hit for
every other. Used by the ablation flow; any sweep whose trials are Prefect tasks can call `run_trials`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

RUNNERS = ("sequential", "dask", "ray")
ADDRESS_SCHEMES = {"dask": ("tcp://", "tls://", "ws://", "wss://", "ucx://", "inproc://"), "ray": ("ray://",)}


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Runner:
    """Where trials run. `workers`/`threads_per_trial` size a local cluster; on an existing cluster
    (`address`) its workers are fixed, and `threads_per_trial` (default: unchanged) sets torch's threads."""

    kind: str = "sequential"
    address: str | None = None
    workers: int | None = None
    threads_per_trial: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in RUNNERS:
            raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {self.kind!r}")
        if self.address and self.kind == "sequential":
            raise ValueError("--address needs --runner dask or --runner ray")
        if self.address and not self.address.startswith(ADDRESS_SCHEMES[self.kind]):
            schemes = " or ".join(ADDRESS_SCHEMES[self.kind])
            raise ValueError(f"--runner {self.kind} expects an address starting with {schemes}, got {self.address!r}")
        if self.address and self.workers:
            raise ValueError("--workers sizes a local cluster; an existing cluster (--address) has its own workers")
        for name in ("workers", "threads_per_trial"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be ≥ 1, got {v}")

    @property
    def local_workers(self) -> int:
        """Processes of a cluster started for the sweep (default 2, or fewer on a 1-core machine)."""
        return self.workers or max(1, min(2, usable_cores()))

    def trial_threads(self) -> int | None:
        """torch threads per trial: given, or the local cluster's share of the cores; None: leave as is."""
        if self.threads_per_trial or self.kind == "sequential" or self.address:
            return self.threads_per_trial
        return max(1, usable_cores() // self.local_workers)

    def task_runner(self) -> Any:
        """A fresh (unstarted) Prefect task runner, or None for `sequential`."""
        if self.kind == "sequential":
            return None
        if self.kind == "dask":
            try:
                from prefect_dask import DaskTaskRunner
            except ImportError as e:
                raise RuntimeError('--runner dask needs prefect-dask: pip install "bellm[scale]"') from e
            if self.address:
                return DaskTaskRunner(address=self.address)
            return DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": self.local_workers,
                    "threads_per_worker": 1,  # one trial per process at a time
                    "processes": True,
                    "dashboard_address": None,
                }
            )
        try:
            from prefect_ray import RayTaskRunner
        except ImportError as e:
            raise RuntimeError('--runner ray needs prefect-ray: pip install "bellm[scale-ray]"') from e
        if self.address:
            return RayTaskRunner(address=self.address)
        cpus = self.local_workers * (self.trial_threads() or 1)  # `workers` trials at a time
        return RayTaskRunner(init_kwargs={"num_cpus": cpus, "include_dashboard": False})

    @contextmanager
    def submitting(self) -> Iterator[None]:
        """Per-trial resources where the engine schedules by them: Ray reserves a trial's threads as CPUs."""
        if self.kind != "ray":
            yield
            return
        from prefect_ray.context import remote_options

        with remote_options(num_cpus=self.trial_threads() or 1):
            yield


@contextmanager
def api_for_workers() -> Iterator[None]:
    """Make the flow's Prefect API the one its workers report to.

    Without PREFECT_API_URL the flow runs on an ephemeral server; worker processes would each start
    their own (slow, and invisible to the flow). Its loopback URL is enough for a local cluster; a
    remote cluster needs a real server (set PREFECT_API_URL for the flow and the workers).
    """
    from prefect.context import FlowRunContext
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ctx = FlowRunContext.get()
    if PREFECT_API_URL.value() or ctx is None or ctx.client is None:
        yield
        return
    with temporary_settings({PREFECT_API_URL: str(ctx.client.api_url).rstrip("/")}):
        yield


def run_trials(task: Any, calls: Sequence[dict[str, Any]], runner: Runner) -> list[tuple[Any, str]]:
    """Run `task(**call)` for every call on `runner`, inside the current flow run.

    Returns (result, final state name) in call order; the state name says whether a trial was reused
    ("Cached") or ran now ("Completed"). A failed trial raises: run sequentially, the trials after it do not
    start (an hour-long sweep stops at its first broken trial, not after the others have run).
    """
    tr = runner.task_runner()
    if tr is None:
        done = []
        for call in calls:
            state = task(**call, return_state=True)
            done.append((state.result(), state.name))  # raises for a failed trial
        return done
    with api_for_workers(), tr, runner.submitting():
        futures = [tr.submit(task, parameters=dict(call)) for call in calls]
        return [(f.result(), f.state.name) for f in futures]
