"""Issue 29's audit, kept true: one bad manifest blocks nothing, a kill between two renames loses nothing,
nothing is deleted through a link or as the only copy, user errors are one `error:` line with exit 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bellm.registry import gc, list_runs, mark_dead_runs, new_run, update_manifest


def _cli():
    from bellm.cli import _register, app

    _register()
    return app


@pytest.mark.parametrize("pid", [99999999999999999999, 2**31, 0, -1, True, "12"])
def test_a_bad_owner_pid_blocks_nothing_and_marks_the_run_dead(tmp_path: Path, pid: object) -> None:
    """Issue 29 item 2: pid 10**20 raised OverflowError in every registry command; 0 and -1 (process groups)
    were always 'alive'."""
    bad, live = new_run(tmp_path, "quick", {}), new_run(tmp_path, "quick", {})
    update_manifest(bad, owner={"pid": pid, "host": os.uname().nodename, "started": None},
                    heartbeat="2000-01-01T00:00:00+00:00")
    marked = {r.id for r, _ in mark_dead_runs(tmp_path)}
    assert marked == {bad.id}
    assert {r.id for r in list_runs(tmp_path)} >= {bad.id, live.id}
    gc(tmp_path)
    for cmd in (["runs", "list"], ["runs", "gc"], ["runs", "show", bad.id]):
        r = CliRunner().invoke(_cli(), [*cmd, "--artifacts", str(tmp_path)])
        assert r.exit_code == 0, r.output
    assert new_run(tmp_path, "quick", {}).manifest["status"] == "running"
