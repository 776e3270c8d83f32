"""Shared CLI helpers: turning library errors into one clear line and a non-zero exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from bellm.config import ConfigError
from bellm.data import DataError
from bellm.models import ModelSourceError

DTYPE_HELP = (
    "inference precision: auto (bf16 where the CPU/GPU computes it natively and it agrees with fp32 on a few "
    "sentences, else fp32) | float32 | bfloat16 (forced, no check)"
)
USER_ERRORS: tuple[type[BaseException], ...] = (DataError, ConfigError, ModelSourceError, ValueError, FileNotFoundError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report expected, user-caused errors as `error: ...` with exit code 2, not a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
