"""Shared CLI helpers: turning bellm's own expected errors into one clear line and a non-zero exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from bellm.errors import BusyError, InputError
from bellm.profiles import DEFAULT_PROFILE, profiles_help
from bellm.sts import SUITES, TASK_KEYS, TASK_LABELS

DTYPE_HELP = (
    "inference precision: auto (bf16 where the CPU/GPU computes it natively and it agrees with fp32 on a few "
    "sentences, else fp32) | float32 | bfloat16 (forced, no check)"
)


def suite_tasks(suite: str) -> str:
    """`STS-B dev + SICK-R dev + NLI dev`: a built-in suite's tasks as help texts name them (from `bellm.sts`, so
    the help follows the suite)."""
    return " + ".join(TASK_LABELS[t] for t in SUITES[suite])


SUITE_HELP = (
    f"what to evaluate on: 'gate' ({suite_tasks('gate')}, fast), 'dev' ({suite_tasks('dev')}: what the flow decides "
    f"on), 'full' ({suite_tasks('full')}: reported, never deciding), a task key "
    f"({', '.join(TASK_KEYS)}), or scored-pair files (.tsv/.csv/.jsonl with score, "
    "sentence1, sentence2); repeat --suite for several"
)
# Only bellm's own error types: a stray ValueError/FileNotFoundError from deep inside a library is a bug
# and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, BusyError)


def check_output_dir(path: Path | None, flag: str = "--output") -> None:
    """An output directory must be a directory or not exist yet: refuse an existing file before any work."""
    if path is not None and path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: exists and is not a directory")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report bad input (`InputError`: data, config, options, paths) and a busy directory (`BusyError`) as
    `error: ...` with exit code 2, not a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


# The run-config options of every command that builds a `RunConfig` (one definition: run, train, ablate).
PROFILE = typer.Option(DEFAULT_PROFILE, "--profile", "-p", help=profiles_help())
SET = typer.Option([], "--set", help="override a config field: section.field=value (JSON value; repeatable)")
CONFIG = typer.Option(None, "--config", help="a JSON file of config overrides")
