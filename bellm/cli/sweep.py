"""`bellm sweep`: the recipe search (trials trained and selected on development data only)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import user_errors
from bellm.errors import InputError


@app.command("sweep")
def sweep(
    spec_file: Path = typer.Argument(..., help="sweep spec (JSON): profile, base overrides, named trials"),
    only: str | None = typer.Option(None, help="comma-separated trial names to run (default: all)"),
    output: Path | None = typer.Option(None, "--output", "-o", help="report dir (default <artifacts>/sweeps/<id>)"),
    progress: bool = typer.Option(True, help="show training progress bars"),
) -> None:
    """Train each trial with a dev learning curve, score its selected adapter on the spec's selection sets
    (`dev` + `extra_dev`: their mean, `dev_mean`, is the rule the table sorts by) and its `report_dev` sets
    (reported, never deciding), and write a table (md/csv), the curves (PNG, dev vs step and vs training
    seconds) and sweep.json. The report lists every finished trial of the spec, including those of earlier
    `--only` runs.

    Test splits are refused: choose settings here, report test numbers once for the finished recipe
    (`bellm eval`). Resumable: finished trials are cached in $BELLM_HOME/sweeps/, a half-trained trial
    resumes from its checkpoints, so rerunning the same command continues where it stopped.
    """
    from bellm.paths import artifacts_dir
    from bellm.sweep import SweepSpec, finished_results, run_trial, sweep_id, trials_root, write_report

    with user_errors():
        spec = SweepSpec.load(spec_file)
        names = list(spec.trials) if only is None else only.split(",")
        unknown = [n for n in names if n not in spec.trials]
        if unknown:
            raise InputError(f"{spec_file}: no trial named {', '.join(unknown)}")
    root = trials_root()
    out = output or artifacts_dir() / "sweeps" / f"{spec_file.stem}-{sweep_id(spec)}"
    for name in names:
        typer.echo(f"trial {name}", err=True)
        run_trial(spec, name, root, progress=progress)
        # After every trial, every finished trial of the spec (not only those run now): a killed sweep still
        # leaves its table, and `--only b` after `--only a` tabulates both.
        results = finished_results(spec, root)
        write_report(results, out, spec)
    typer.echo(json.dumps({"dir": str(out), "trials": [r["name"] for r in results]}))
