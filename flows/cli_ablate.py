"""`bellm ablate`: the k × pooling ablation sweep (the `bellm-ablation` flow, Prefect ephemeral mode).

Joins the `bellm` CLI through the `bellm.commands` entry point; every default is `AblationConfig`'s."""

from __future__ import annotations

import json

import typer

from bellm.ablation import AblationConfig
from bellm.cli import app
from bellm.cli.common import PROFILE, SET, user_errors
from bellm_app.flows.runner_options import ADDRESS, RUNNER, THREADS_PER_TRIAL, WORKERS, check_runner

_D = AblationConfig()


def _help(name: str) -> str | None:
    return AblationConfig.model_fields[name].description


@app.command("ablate")
def ablate(
    profile: str = PROFILE,
    set_: list[str] = SET,
    ks: str = typer.Option(",".join(map(str, _D.ks)), help="comma-separated k values (must include 0, the baseline)"),
    poolings: str = typer.Option(",".join(_D.poolings), help="comma-separated poolings"),
    steps: int = typer.Option(_D.steps, help=_help("steps")),
    seeds: str | None = typer.Option(None, help="comma-separated " + (_help("seeds") or "")),
    table_suite: str = typer.Option(_D.table_suite, help="suite for the table: full, gate, or task keys (a,b,...)"),
    max_eval_pairs: int | None = typer.Option(_D.max_eval_pairs, help=_help("max_eval_pairs")),
    zero_shot: bool = typer.Option(_D.zero_shot, help=_help("zero_shot")),
    train: bool = typer.Option(_D.train, help="train each trial (--no-train: zero-shot curve only)"),
    bootstrap: int = typer.Option(_D.bootstrap, help="bootstrap resamples for the 95% intervals"),
    prefix_cache_gb: float = typer.Option(_D.prefix_cache_gb, help="GiB " + (_help("prefix_cache_gb") or "")),
    runner: str = RUNNER,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    threads_per_trial: int | None = THREADS_PER_TRIAL,
    write_docs: bool = typer.Option(False, help="also write docs/ablation.md and docs/ablation.png"),
) -> None:
    """Sweep k × pooling: train each trial on the same budget, evaluate, bootstrap Δ vs k=0 with 95% CIs.

    Interrupted sweeps resume: finished trials are cached (Prefect) in <artifacts>/ablations/trials/, trainings
    are shared with `bellm run` and `bellm sweep` ($BELLM_HOME/train/), a half-trained trial resumes from its
    checkpoints. Output: <artifacts>/ablations/<id>/ (ablation.md, CSVs, ablation.png, ablation.json).
    `--runner dask|ray` runs trials in parallel worker processes (docs/scale.md).
    """
    from bellm.profiles import build_config, overrides_of
    from bellm_app.flows.cli_run import prefect_env

    with user_errors():
        overrides = overrides_of(set_)
        build_config(profile, overrides)
        check_runner(runner, address, workers, threads_per_trial)
        suite: str | list[str] = table_suite if table_suite in ("full", "gate") else table_suite.split(",")
        abl = AblationConfig(
            ks=[int(k) for k in ks.split(",")],
            poolings=poolings.split(","),
            steps=steps,
            seeds=None if seeds is None else [int(x) for x in seeds.split(",")],
            table_suite=suite,
            max_eval_pairs=max_eval_pairs,
            zero_shot=zero_shot,
            train=train,
            bootstrap=bootstrap,
            prefix_cache_gb=prefix_cache_gb,
        )
    prefect_env()
    from bellm_app.flows.ablation import bellm_ablation

    out = bellm_ablation(
        profile=profile,
        overrides=overrides,
        ablation=abl.model_dump(),
        runner=runner,
        address=address,
        workers=workers,
        threads_per_trial=threads_per_trial,
        write_docs=write_docs,
    )
    typer.echo(json.dumps({k: out[k] for k in ("dir", "trial_states", "trial_workers")}))
