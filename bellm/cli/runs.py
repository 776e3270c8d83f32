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


def _fail(e: Exception) -> typer.Exit:
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _champions(artifacts: Path | None) -> dict[str, str]:
    """run id -> champion mark, for the default pointer and each setting's pointer (unreadable ones warned)."""
    from bellm.registry import RUN_ID, root_dir

    root = root_dir(artifacts)
    marks: dict[str, str] = {}
    pointers = [root / "champion", *sorted((root / "champions").glob("*"))]
    for p in pointers:
        if not p.is_file():
            continue
        run_id = p.read_text(errors="replace").strip()
        if not RUN_ID.fullmatch(run_id) or not (root / "runs" / run_id / "manifest.json").is_file():
            typer.secho(f"warning: {p} points at {run_id!r}, which is not a readable run (dangling champion)",
                        fg=typer.colors.YELLOW, err=True)
            continue
        marks[run_id] = "  * champion" if p.name == "champion" else f"  * champion of {p.name}"
    return marks


@runs_app.command("list")
def list_cmd(artifacts: Path | None = RootOpt) -> None:
    """One line per run: id, profile, status, trained average, champion mark. Runs whose process died are
    marked `interrupted` first; unreadable runs are listed and flagged."""
    from bellm.registry import RegistryError, list_runs, mark_dead_runs

    mark_dead_runs(artifacts)
    marks = _champions(artifacts)
    runs = list_runs(artifacts)
    if not runs:
        typer.echo("no runs yet")
        return
    typer.echo(f"{'run':<28} {'profile':<8} {'status':<11} {'avg':>6}")
    for run in runs:
        try:
            man = run.manifest
            avg = _avg(run)
        except RegistryError as e:
            typer.echo(f"{run.id:<28} {'?':<8} {'UNREADABLE':<11} {'-':>6}  ({e})")
            continue
        typer.echo(f"{run.id:<28} {man.get('profile', '?'):<8} {man.get('status', '?'):<11} {avg:>6}"
                   f"{marks.get(run.id, '')}")


@runs_app.command("show")
def show_cmd(run_id: str = typer.Argument(..., help="run id, or 'champion'"), artifacts: Path | None = RootOpt) -> None:
    """Print a run's manifest (status, config, timings, gate verdicts) and metrics summary as JSON."""
    from bellm.registry import RegistryError, champion, get_run, mark_dead_runs

    try:
        mark_dead_runs(artifacts)
        run = champion(artifacts) if run_id == "champion" else get_run(run_id, artifacts)
        if run is None:
            raise RegistryError("no champion yet")
        manifest, metrics = run.manifest, run.metrics or {}
    except RegistryError as e:
        raise _fail(e) from None
    summary = {k: v.get("avg") if isinstance(v, dict) and "avg" in v else v for k, v in metrics.items() if k != "onnx"}
    summary["onnx"] = {k: v.get("avg") for k, v in (metrics.get("onnx") or {}).items()}
    typer.echo(json.dumps({"dir": str(run.dir), "manifest": manifest, "metrics_avg": summary}, indent=2))


@runs_app.command("promote")
def promote_cmd(
    run_id: str = typer.Argument(..., help="the run to make champion of its setting"),
    force: bool = typer.Option(False, help="skip the checks (not recommended); a run that did not pass also "
                               "needs --reason"),
    reason: str | None = typer.Option(None, help="why a forced promotion is right (recorded in the manifest)"),
    artifacts: Path | None = RootOpt,
) -> None:
    """Make a passed run the champion of its setting (profile + model + suite), after re-checking its absolute
    and regression gates against the current champion under the registry lock."""
    from bellm.registry import RegistryError, promote

    try:
        run = promote(run_id, artifacts, force=force, reason=reason)
    except RegistryError as e:
        raise _fail(e) from None
    typer.echo(f"champion is now {run.id}")


@runs_app.command("gc")
def gc_cmd(artifacts: Path | None = RootOpt) -> None:
    """Clean up after killed processes: mark dead `running` runs `interrupted`, delete temp directories of
    interrupted writes (in the registry and in $BELLM_HOME), delete the ONNX models of runs that failed or
    were interrupted, and stop ephemeral Prefect servers whose `bellm run` is gone."""
    from bellm.io import remove_leftovers
    from bellm.parentwatch import legacy_ephemeral_server, stop_orphans
    from bellm.paths import bellm_home
    from bellm.registry import gc

    done = gc(artifacts)
    done["removed"] += [str(p) for p in remove_leftovers(bellm_home())]
    done["stopped"] = [str(pid) for pid in stop_orphans(also=legacy_ephemeral_server)]
    for run_id in done["interrupted"]:
        typer.echo(f"marked interrupted: {run_id}")
    for pid in done["stopped"]:
        typer.echo(f"stopped orphaned server: pid {pid}")
    for path in done["removed"]:
        typer.echo(f"removed: {path}")
    if not any(done.values()):
        typer.echo("nothing to clean")
