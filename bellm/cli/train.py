"""`bellm train`: LoRA fine-tuning with the AnglE objective, resumable, multi-process via torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import CONFIG, PROFILE, SET, check_output_dir, user_errors


def torchrun_command(nproc: int, config_file: Path, output: Path) -> list[str]:
    """The relaunch under torchrun: N local workers running `python -m bellm.training`."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "bellm.training", "--config", str(config_file), "--output", str(output),
    ]


@app.command("train")
def train_cmd(
    output: Path = typer.Option(..., "--output", "-o", help="run directory; rerunning the same command resumes"),
    profile: str = PROFILE,
    config: Path | None = CONFIG,
    set_: list[str] = SET,
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train a LoRA adapter into OUTPUT/adapter (resumes from OUTPUT/checkpoints when present).

    With train.nproc_per_node > 1 it relaunches itself under torchrun (DDP: gloo on CPU, NCCL on GPU);
    the global batch is batch_size × processes × grad_accum.
    """
    from bellm.config import preflight
    from bellm.io import write_json_atomic
    from bellm.profiles import build_config
    from bellm.training.distributed import launched_by_torchrun

    with user_errors():
        check_output_dir(output)
        cfg = preflight(build_config(profile, set_, config), evaluate=False)
        if not progress:
            cfg.train.progress = False
        n = cfg.train.nproc_per_node
        if n > 1 and not launched_by_torchrun():
            launch = write_json_atomic(output / "launch_config.json", cfg.model_dump())
            cmd = torchrun_command(n, launch, output)
            typer.echo(f"launching {n} processes: {' '.join(cmd)}", err=True)
            rc = subprocess.call(cmd, env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            if rc:
                raise typer.Exit(rc)
            return
        from bellm.training import train

        result = train(cfg, output)
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from is not None else ""
    best = (f", best dev Spearman {result.best_dev_spearman:.2f} at step {result.best_step}"
            if result.best_dev_spearman is not None else "")
    typer.echo(f"wrote {result.adapter_dir}: {result.steps} steps, final loss {result.final_loss:.4f}, "
               f"{result.seconds:.0f} s{resumed}{best}")
