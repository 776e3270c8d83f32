"""The layers as docs/architecture.md draws them: the library `bellm` (its CLI included) imports neither the Prefect
application (`bellm_app`, the repository's flows/ and tasks/) nor Prefect; the app reaches the CLI through the
`bellm.commands` entry points instead (`bellm run` and `bellm ablate` used to be imported by `bellm.cli`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("bellm_app", "flows", "tasks", "prefect", "prefect_dask", "prefect_ray")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_library_imports_no_application_and_no_prefect() -> None:
    bad = {f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "bellm").rglob("*.py") for m in imported(p)
           if m.split(".")[0] in FORBIDDEN}
    assert not bad, sorted(bad)


def test_the_run_and_ablate_commands_are_registered_by_entry_point() -> None:
    from bellm.cli import command_plugins

    assert {"bellm_app.flows.cli_run", "bellm_app.flows.cli_ablate"} <= set(command_plugins())
