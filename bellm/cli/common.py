"""Shared CLI helpers: turning bellm's own expected errors into one clear line and a non-zero exit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer

from bellm.errors import BusyError, InputError

# Only bellm's own error types: a stray ValueError/FileNotFoundError from deep inside a library is a bug
# and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, BusyError)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report bad input (`InputError`: data, config, options, paths) and a busy directory (`BusyError`) as
    `error: ...` with exit code 2, not a traceback."""
    try:
        yield
    except USER_ERRORS as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
