"""The `--runner/--address/--workers/--threads-per-trial` options, shared by every command that fans out
trials (`bellm ablate`, and any other sweep of Prefect tasks): one definition, validated by `runners.Runner`."""

from __future__ import annotations

import typer

RUNNER = typer.Option(
    "sequential",
    "--runner",
    help="where trials run: sequential (this process) | dask (prefect-dask) | ray (prefect-ray); "
    'dask needs `pip install "bellm[scale]"`, ray `pip install "bellm[scale-ray]"`',
)
ADDRESS = typer.Option(
    None,
    "--address",
    help="an existing cluster: tcp://host:8786 (Dask scheduler) or ray://host:10001 (Ray client); "
    "default: start a local cluster for this sweep",
)
WORKERS = typer.Option(None, "--workers", help="worker processes of the local cluster (default 2)", min=1)
THREADS_PER_TRIAL = typer.Option(
    None,
    "--threads-per-trial",
    help="torch threads of each trial (default: cores / workers on a local cluster; unchanged otherwise)",
    min=1,
)


def check_runner(runner: str, address: str | None, workers: int | None, threads_per_trial: int | None) -> None:
    """Fail before any work starts (raises ValueError, reported by `user_errors`)."""
    import importlib.util

    from bellm_app.flows.runners import Runner

    Runner(runner, address, workers, threads_per_trial)
    module, extra = {"dask": ("prefect_dask", "scale"), "ray": ("prefect_ray", "scale-ray")}.get(runner, (None, ""))
    if module and importlib.util.find_spec(module) is None:
        raise ValueError(f'--runner {runner} needs {module.replace("_", "-")}: pip install "bellm[{extra}]"')
