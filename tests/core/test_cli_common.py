"""Which errors the CLI reports as "bad input" (exit 2) and which keep their traceback (bugs)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from bellm.cli.common import user_errors
from bellm.config import ConfigError
from bellm.data import DataError
from bellm.errors import BusyError, InputError
from bellm.models import ModelSourceError
from bellm.registry import RegistryError
from bellm.runtime import ExportFormatError


def _app(exc: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        with user_errors():
            raise exc

    return app


@pytest.mark.parametrize("exc", [
    DataError("f.tsv", 3, "bad"), ConfigError("x"), ModelSourceError("m"), RegistryError("r"),
    ExportFormatError("e"), InputError("i"), BusyError("locked"),
])
def test_project_input_errors_exit_2(exc: BaseException) -> None:
    r = CliRunner().invoke(_app(exc), [])
    assert r.exit_code == 2 and "error:" in r.output


@pytest.mark.parametrize("exc", [ValueError("a bug"), FileNotFoundError("a bug"), KeyError("k")])
def test_other_errors_are_not_reported_as_bad_input(exc: BaseException) -> None:
    """A ValueError from deep inside a library used to become "error: ... exit 2", hiding the bug."""
    r = CliRunner().invoke(_app(exc), [])
    assert r.exit_code != 2 and isinstance(r.exception, type(exc))


def test_suite_help_names_every_task_the_dev_suite_decides_on() -> None:
    """`bellm eval --help` said 'dev' was STS-B dev + SICK-R trial after NLI dev joined the suite; the help is now
    built from `bellm.sts.SUITES`, so it names what the flow really decides on."""
    from bellm.cli.common import SUITE_HELP
    from bellm.sts import DATA_TASKS, SUITES, TASK_LABELS

    for task in SUITES["dev"]:
        assert TASK_LABELS[task] in SUITE_HELP
    for key in DATA_TASKS:
        assert key in SUITE_HELP


def test_sweep_help_says_what_decides() -> None:
    """`bellm sweep --help` said trials were scored on "STS-B dev and SICK-R dev" after NLI dev joined the rule and
    `report_dev` sets were scored beside it: the help names the spec fields that decide and those that only report."""
    from bellm.cli import sweep as sweep_cli

    doc = " ".join((sweep_cli.sweep.__doc__ or "").split())
    for field in ("extra_dev", "dev_mean", "report_dev"):
        assert field in doc
    assert "STS-B dev and SICK-R dev" not in doc
