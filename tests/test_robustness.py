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


def _publish_killed_at(dest: Path, step: int, swap: bool) -> bool:
    """Replace `dest` (files old → new) in a forked child that dies (os._exit, like kill -9: no cleanup) at
    its `step`-th filesystem call of the publish; True if it got that far before finishing."""
    import shutil

    import bellm.io as bio

    pid = os.fork()
    if pid == 0:  # child
        calls = [0]

        def dying(fn):  # noqa: ANN001, ANN202
            def wrapped(*a, **k):  # noqa: ANN002, ANN003, ANN202
                if calls[0] == step:
                    os._exit(9)
                calls[0] += 1
                return fn(*a, **k)
            return wrapped

        bio.os.replace = dying(os.replace)  # type: ignore[attr-defined]
        bio.shutil.rmtree = dying(shutil.rmtree)  # type: ignore[attr-defined]
        bio.exchange = dying(bio.exchange if swap else lambda a, b: False)  # type: ignore[assignment]
        with bio.atomic_path(dest) as tmp:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "f").write_text("new")
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 9


@pytest.mark.parametrize("swap", [True, False], ids=["renameat2", "fallback"])
def test_a_kill_at_any_step_of_a_directory_replace_keeps_old_or_new(tmp_path: Path, swap: bool) -> None:
    """Issue 29 item 4: killed between atomic_path's two renames, `dest` was missing and `runs gc` then deleted
    the old copy. With the swap nothing is ever missing; with the fallback, gc moves the old copy back."""
    import bellm.io as bio
    from bellm.io import remove_leftovers

    if swap and not bio.exchange(tmp_path, tmp_path):  # swapping a path with itself: a no-op probing support
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    step, killed = 0, True
    while killed:
        dest = tmp_path / f"s{step}" / "onnx"
        (dest / "sub").mkdir(parents=True)
        (dest / "sub" / "f").write_text("old")
        killed = _publish_killed_at(dest, step, swap)
        if swap or not killed:
            assert (dest / "sub" / "f").read_text() in ("old", "new")  # at once, at every step
        remove_leftovers(dest.parent, stale_s=0)  # `runs gc`: the writer is dead
        assert (dest / "sub" / "f").read_text() in ("old", "new"), f"lost at step {step}"
        assert [p.name for p in dest.parent.iterdir()] == ["onnx"]
        step += 1
    assert step >= 2 and (dest / "sub" / "f").read_text() == "new"
