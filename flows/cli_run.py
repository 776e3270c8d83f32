"""`bellm run`: the main job — the whole train-eval-export flow, locally in Prefect's ephemeral mode.

The command lives with the flows it runs and joins the `bellm` CLI through the `bellm.commands` entry point
(pyproject.toml), so the library never imports the application."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from types import FrameType

import typer

from bellm.cli import app
from bellm.cli.common import CONFIG, PROFILE, SET, user_errors


def prefect_env() -> None:
    """Keep Prefect's state inside bellm's home and off the network, unless the user configured it."""
    from bellm.paths import bellm_home

    os.environ.setdefault("PREFECT_HOME", str(bellm_home() / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # Prefect's ephemeral server gets 20 s to start by default; a loaded 2-core machine needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    exit_cleanly_on_sigterm()
    ephemeral_server_dies_with_us()


class _WatchedSubprocess:
    """Prefect's server module's view of `subprocess`: `Popen` of `python -m uvicorn ...` becomes
    `python -m bellm.parentwatch uvicorn ...` with the owner in its environment; the rest is `subprocess`."""

    def __getattr__(self, name: str) -> object:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(args: list[str], **kw: object) -> subprocess.Popen:  # noqa: N802 - subprocess's name
        from bellm.parentwatch import owner_env

        if list(args[1:3]) == ["-m", "uvicorn"]:
            args = [args[0], "-m", "bellm.parentwatch", *args[2:]]
            kw["env"] = {**(kw.get("env") or os.environ), **owner_env()}  # type: ignore[dict-item]
        return subprocess.Popen(args, **kw)  # type: ignore[arg-type]


def ephemeral_server_dies_with_us() -> None:
    """Start Prefect's ephemeral API server under `bellm.parentwatch`, so a `kill -9` of this process takes
    it down too (it used to stay, ≈ 230 MB and a port); `bellm runs gc` stops any that outlived their owner.
    Prefect spawns it from `prefect.server.api.server` with `subprocess.Popen`: only that module is patched."""
    import prefect.server.api.server as server

    if hasattr(server, "SubprocessASGIServer") and getattr(server, "subprocess", None) is subprocess:
        server.subprocess = _WatchedSubprocess()  # type: ignore[assignment]


def _sigterm_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM a normal interpreter exit (code 143) instead of an abrupt death.

    Prefect turns a SIGTERM during a flow into a crashed run and then re-sends the signal to the handler it
    found. With Python's default handler the process dies on the spot and its atexit hooks never run, so
    the ephemeral API server Prefect started (a uvicorn child) outlives the job. Raising SystemExit here
    lets Prefect stop that server on the way out.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL, None,
    ):
        signal.signal(signal.SIGTERM, _sigterm_exit)


@app.command("run")
def run(
    profile: str = PROFILE,
    set_: list[str] = SET,
    config: Path | None = CONFIG,
) -> None:
    """Run the whole pipeline: train → STS gate → report → ONNX export → register (and promote).

    Uses a Prefect server if PREFECT_API_URL is set, otherwise Prefect's ephemeral mode. Results land in
    artifacts/runs/<timestamp>-<id>/ (see artifacts/README.md); exit code 1 if a gate or check fails.
    """
    from bellm.config import preflight
    from bellm.profiles import build_config, overrides_of

    with user_errors():
        overrides = overrides_of(set_, config)
        preflight(build_config(profile, overrides))  # fail fast on a bad config or missing extra, before Prefect
    prefect_env()
    from bellm_app.flows.train_eval_export import train_eval_export

    try:
        result = train_eval_export(profile=profile, overrides=overrides)
    except Exception as e:  # noqa: BLE001 - the flow run is already marked Failed; say why in one line
        typer.secho(f"run failed: {type(e).__name__}: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"run passed: {result['run_dir']}" + (" (new champion)" if result.get("promoted") else ""))
