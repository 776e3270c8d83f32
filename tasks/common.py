"""Retry and cache policy shared by the tasks.

Transient failures (IO) are retried with backoff; deterministic ones (bad data, bad config, a missing
package, a failed gate, a failed parity check) are not: retrying cannot change their outcome, and a failed
gate must fail the flow run. `retrying_task` is the one way a task gets that policy.
"""

from __future__ import annotations

from typing import Any

from bellm.config import ConfigError
from bellm.data import DataError

RETRY_DELAYS = [2, 10, 30]


def deterministic_errors() -> tuple[type[BaseException], ...]:
    # ImportError: a missing extra (e.g. `baseline`) does not appear by waiting; FloatingPointError: training
    # diverged (NaN/inf loss) — the same inputs diverge again.
    errs: list[type[BaseException]] = [DataError, ConfigError, ValueError, TypeError, KeyError, ImportError,
                                       FloatingPointError]
    try:
        from bellm.gates import GateFailed

        errs.append(GateFailed)
    except ImportError:  # pragma: no cover - gates module always present in a full install
        pass
    return tuple(errs)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry only errors that are not deterministic."""
    try:
        state.result()
    except deterministic_errors():
        return False
    except Exception:  # noqa: BLE001 - anything else (OSError, timeouts) may be transient
        return True
    return False


def retrying_task(name: str, **kwargs: Any) -> Any:
    """`prefect.task` with the transient-only retry policy (RETRY_DELAYS backoff, `retry_transient`)."""
    from prefect import task

    return task(name=name, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
                retry_condition_fn=retry_transient, **kwargs)
