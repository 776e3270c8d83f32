"""`bellm runs list|show|promote`: inspect the artifacts registry."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bellm.cli import app

runs_app = typer.Typer(
    help="Inspect the artifacts registry (runs, their gates and metrics, the champion).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")

RootOpt = typer.Option(None, "--artifacts", help="registry root (default ./artifacts or $BELLM_ARTIFACTS)")


def _avg(run) -> str:  # noqa: ANN001
    m = run.metrics or {}
    r = m.get("trained") or {}
    return f"{r['avg']:.2f}" if isinstance(r.get("avg"), (int, float)) else "-"


@runs_app.command("list")
def list_cmd(artifacts: Path | None = RootOpt) -> None:
    """One line per run: id, profile, status, trained average, champion mark."""
    from bellm.registry import champion, list_runs

    champ = champion(artifacts)
    runs = list_runs(artifacts)
    if not runs:
        typer.echo("no runs yet")
        return
    typer.echo(f"{'run':<28} {'profile':<8} {'status':<8} {'avg':>6}")
    for run in runs:
        man = run.manifest
        mark = "  * champion" if champ and champ.id == run.id else ""
        typer.echo(f"{run.id:<28} {man.get('profile', '?'):<8} {man.get('status', '?'):<8} {_avg(run):>6}{mark}")


@runs_app.command("show")
def show_cmd(run_id: str = typer.Argument(..., help="run id, or 'champion'"), artifacts: Path | None = RootOpt) -> None:
    """Print a run's manifest (status, config, timings, gate verdicts) and metrics summary as JSON."""
    from bellm.registry import RegistryError, champion, get_run

    try:
        run = champion(artifacts) if run_id == "champion" else get_run(run_id, artifacts)
    except RegistryError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if run is None:
        typer.secho("error: no champion yet", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    metrics = run.metrics or {}
    summary = {k: v.get("avg") if isinstance(v, dict) and "avg" in v else v for k, v in metrics.items() if k != "onnx"}
    summary["onnx"] = {k: v.get("avg") for k, v in (metrics.get("onnx") or {}).items()}
    typer.echo(json.dumps({"dir": str(run.dir), "manifest": run.manifest, "metrics_avg": summary}, indent=2))


@runs_app.command("promote")
def promote_cmd(
    run_id: str = typer.Argument(..., help="the run to make champion"),
    force: bool = typer.Option(False, help="promote even if the run did not pass (not recommended)"),
    artifacts: Path | None = RootOpt,
) -> None:
    """Make a passed run the champion (atomically rewrites artifacts/champion)."""
    from bellm.registry import RegistryError, promote

    try:
        run = promote(run_id, artifacts, force=force)
    except RegistryError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"champion is now {run.id}")
