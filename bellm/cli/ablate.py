"""`bellm ablate`: the k × pooling ablation sweep (the `bellm-ablation` flow, Prefect ephemeral mode)."""

from __future__ import annotations

import json

import typer

from bellm.cli import app
from bellm.cli.common import user_errors
from bellm.cli.runner_options import ADDRESS, RUNNER, THREADS_PER_TRIAL, WORKERS, check_runner
from bellm.config import PREFIX_CACHE_GB


@app.command("ablate")
def ablate(
    profile: str = typer.Option("quick", "--profile", "-p", help="base run config profile"),
    set_: list[str] = typer.Option([], "--set", help="override a base config field: section.field=value"),
    ks: str = typer.Option("0,1,2,4,8", help="comma-separated k values (must include 0, the baseline)"),
    poolings: str = typer.Option("last,mean", help="comma-separated poolings"),
    steps: int = typer.Option(40, help="LoRA training steps per trial (identical for every trial)"),
    seeds: str | None = typer.Option(
        None,
        help="comma-separated training seeds: each trained trial runs once per seed, Δ is the seed mean "
        "(default: the profile's train.seed)",
    ),
    table_suite: str = typer.Option("full", help="suite for the table: full, gate, or comma-separated task keys"),
    max_eval_pairs: int | None = typer.Option(None, help="cap pairs per evaluation task (budget)"),
    zero_shot: bool = typer.Option(True, help="also evaluate the untrained grid"),
    train: bool = typer.Option(True, help="train each trial (--no-train: zero-shot curve only)"),
    bootstrap: int = typer.Option(1000, help="bootstrap resamples for the 95% intervals"),
    prefix_cache_gb: float = typer.Option(
        PREFIX_CACHE_GB,
        help="memory (GiB) for the frozen-prefix cache: the layers below LoRA are run once per sentence for all "
        "trials of the process (0: off; numbers are the same either way)",
    ),
    runner: str = RUNNER,
    address: str | None = ADDRESS,
    workers: int | None = WORKERS,
    threads_per_trial: int | None = THREADS_PER_TRIAL,
    write_docs: bool = typer.Option(False, help="also write docs/ablation.md and docs/ablation.png"),
) -> None:
    """Sweep k × pooling: train each trial on the same budget, evaluate, bootstrap Δ vs k=0 with 95% CIs.

    Interrupted sweeps resume: finished trials are cached (Prefect) in <artifacts>/ablations/trials/, a
    half-trained trial resumes from its checkpoints. Output: <artifacts>/ablations/<id>/ (ablation.md, CSVs,
    ablation.png, ablation.json). `--runner dask|ray` runs trials in parallel worker processes (docs/scale.md).
    """
    from bellm.ablation import AblationConfig
    from bellm.cli.run import prefect_env
    from bellm.profiles import build_config, parse_override

    with user_errors():
        overrides = {}
        for item in set_:
            keys, value = parse_override(item)
            overrides[".".join(keys)] = value
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
    from flows.ablation import bellm_ablation

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
