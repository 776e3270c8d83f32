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


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    import time

    from bellm.parentwatch import running

    deadline = time.monotonic() + timeout
    while running(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running(pid)


STAND_IN = ["http.server", "0", "--bind", "127.0.0.1"]  # a stand-in server: serves until stopped


def test_a_watched_child_dies_with_its_killed_parent(tmp_path: Path) -> None:
    """Issue 29 item 5: `bellm run` killed with -9 orphaned its ephemeral Prefect server. A parent (standing in
    for `bellm run`) starts a stand-in server as bellm starts Prefect's; kill -9 the parent: the child goes."""
    import signal
    import subprocess
    import sys

    parent_code = ("import subprocess, sys, time\n"
                   f"p = subprocess.Popen([sys.executable, '-m', 'bellm.parentwatch', *{STAND_IN!r}])\n"
                   "print(p.pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert not _wait_gone(child, timeout=1.0)  # alive while its parent is
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(child), "the child outlived its killed parent"
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def test_bellm_run_starts_prefect_s_server_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect_env() makes Prefect spawn its ephemeral server through bellm.parentwatch, owner recorded."""
    import subprocess

    import prefect.server.api.server as server

    from bellm_app.flows import cli_run as run_mod

    seen: dict = {}
    monkeypatch.setattr(server, "subprocess", server.subprocess)  # restored after the test
    monkeypatch.setattr(subprocess, "Popen", lambda args, **kw: seen.update(args=args, env=kw["env"]))
    run_mod.ephemeral_server_dies_with_us()
    server.SubprocessASGIServer(port=8123)._run_uvicorn_command()
    server.SubprocessASGIServer._instances.pop(8123, None)
    assert seen["args"][1:4] == ["-m", "bellm.parentwatch", "uvicorn"]
    assert seen["env"]["BELLM_WATCH_OWNER"].startswith(f"{os.getpid()}:")
    assert "prefect.server.api.server:create_app" in seen["args"]


def test_runs_gc_stops_servers_whose_owner_is_dead(tmp_path: Path) -> None:
    """A server whose watchdog could not act (or one an older bellm started) is stopped by `runs gc`; one
    whose owner lives is left alone."""
    import subprocess
    import sys

    from bellm.parentwatch import owner_env

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def orphan(env: dict[str, str]) -> int:  # started through a shell that exits: re-parented, like an orphan
        out = subprocess.run(["sh", "-c", f"{sys.executable} -m {' '.join(STAND_IN)} >/dev/null 2>&1 & echo $!"],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True)
        return int(out.stdout)

    lost, kept = orphan({"BELLM_WATCH_OWNER": f"{dead.pid}:1"}), orphan(owner_env())
    try:
        r = CliRunner().invoke(_cli(), ["runs", "gc", "--artifacts", str(tmp_path)])
        assert r.exit_code == 0, r.output
        assert f"stopped orphaned server: pid {lost}" in r.output
        assert _wait_gone(lost) and not _wait_gone(kept, timeout=0.5)
    finally:
        for pid in (lost, kept):
            with __import__("contextlib").suppress(ProcessLookupError):
                os.kill(pid, 9)


def test_export_through_a_symlinked_output_publishes_into_its_target(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Issue 29 item 6: `export -o LINK` did all the work, then failed at publish with NotADirectoryError."""
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "latest"
    link.symlink_to(real, target_is_directory=True)
    args = ["export", "--model", str(tiny_model_dir), "-k", "1", "--pooling", "mean", "--variants", "fp32",
            "--no-sts-gate", "--output", str(link)]
    for _ in range(2):  # into the empty target, then over the previous export
        r = CliRunner().invoke(_cli(), args)
        assert r.exit_code == 0, r.output
        assert link.is_symlink() and (real / "fp32" / "bellm.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "real"]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from bellm.profiles import build_config
    from bellm.training import train

    cfg = build_config("smoke", {"model": {"source": str(tiny_model_dir)}, "train": {"progress": False},
                                 "data": {"max_eval_pairs": 16}})
    return train(cfg, tmp_path_factory.mktemp("adapter-run")).adapter_dir


def _one_error_line(r, needle: str) -> None:  # noqa: ANN001
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert "Traceback" not in r.output and "error: " in r.output and needle in r.output, r.output


def _corrupt(d: Path) -> None:
    (d / "adapter_model.safetensors").write_bytes(b"garbage")


def _missing(d: Path) -> None:
    (d / "adapter_model.safetensors").unlink()


def _contradicting_config(d: Path) -> None:
    import json

    c = json.loads((d / "adapter_config.json").read_text())
    c["r"] *= 2
    (d / "adapter_config.json").write_text(json.dumps(c))


@pytest.mark.parametrize("spoil", [_corrupt, _missing, _contradicting_config])
def test_bad_adapter_weights_are_one_error_line(adapter: Path, tmp_path: Path, spoil) -> None:  # noqa: ANN001
    """Issue 29 item 7: corrupt or missing weights, or an adapter_config.json contradicting them, gave a
    SafetensorError / HFValidationError / RuntimeError traceback and exit 1."""
    import shutil

    bad = tmp_path / "adapter"
    shutil.copytree(adapter, bad)
    spoil(bad)
    (tmp_path / "in.txt").write_text("hello\n")
    r = CliRunner().invoke(_cli(), ["encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "e.npy"),
                                    "--adapter", str(bad)])
    _one_error_line(r, str(bad))
    assert not (tmp_path / "e.npy").exists()


def test_cli_input_errors_are_exit_2(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Issue 29 item 7: each of these was a traceback with exit 1."""
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    model = ["--model", str(tiny_model_dir), "--suite", "stsb", "--max-pairs", "8"]
    _one_error_line(CliRunner().invoke(_cli(), ["eval", *model, "--min-avg", "NaN"]), "--min-avg")
    _one_error_line(CliRunner().invoke(_cli(), ["eval", *model, "-o", str(a_file)]), "not a directory")
    smoke = ["--profile", "smoke", "--set", f'model.source="{tiny_model_dir}"', "--no-progress"]
    _one_error_line(CliRunner().invoke(_cli(), ["train", "-o", str(a_file), *smoke]), "not a directory")
    r = CliRunner().invoke(_cli(), ["train", "-o", str(tmp_path / "big"), *smoke, "--set", "train.batch_size=1000"])
    _one_error_line(r, "exceeds the training data")
    assert a_file.read_text() == "x"


def test_runs_gc_removes_a_symlinked_onnx_without_following_it(tmp_path: Path) -> None:
    """Issue 29 items 7 and 8: `runs gc` raised on a failed run whose `onnx` is a symbolic link; it must drop
    the link and leave what it points to alone."""
    precious = tmp_path / "elsewhere"
    (precious / "fp32").mkdir(parents=True)
    run = new_run(tmp_path / "reg", "quick", {})
    update_manifest(run, status="failed")
    (run.dir / "onnx").symlink_to(precious, target_is_directory=True)
    r = CliRunner().invoke(_cli(), ["runs", "gc", "--artifacts", str(tmp_path / "reg")])
    assert r.exit_code == 0, r.output
    assert not os.path.lexists(run.dir / "onnx") and (precious / "fp32").is_dir()


def test_runs_gc_never_deletes_through_a_symlinked_run_directory(tmp_path: Path) -> None:
    """Issue 29 item 8: `runs gc` on a run directory that is a symbolic link deleted `onnx/` in its target."""
    import shutil

    run = new_run(tmp_path / "reg", "quick", {})
    update_manifest(run, status="failed")
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run.dir, elsewhere)
    (elsewhere / "onnx" / "fp32").mkdir(parents=True)
    run.dir.symlink_to(elsewhere, target_is_directory=True)
    r = CliRunner().invoke(_cli(), ["runs", "gc", "--artifacts", str(tmp_path / "reg")])
    assert r.exit_code == 0, r.output
    assert (elsewhere / "onnx" / "fp32").is_dir() and run.dir.is_symlink()


def _export_copy(export_dir: Path, tmp_path: Path) -> Path:
    import shutil

    d = tmp_path / "export"
    shutil.copytree(export_dir / "fp32", d / "fp32")
    return d / "fp32"


@pytest.mark.parametrize("what", ["model.onnx", "tokenizer.json", "subdir"])
def test_an_export_never_loads_files_from_outside_through_a_link(tiny_model_dir: Path, tmp_path: Path,
                                                                  what: str) -> None:
    """Issue 29 item 8: containment was lexical: a symlinked model.onnx, tokenizer.json or sub-directory inside
    an export loaded from outside it. Real paths are checked now."""
    import json
    import shutil

    from export_helpers import shared_export

    from bellm.runtime import ExportFormatError, OnnxEncoder

    export_dir = shared_export(str(tiny_model_dir), str(tmp_path.parent))[0]
    d = _export_copy(export_dir, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    if what == "subdir":  # bellm.json names sub/model.onnx, and sub is a link out of the export
        shutil.move(d / "model.onnx", outside / "model.onnx")
        (d / "sub").symlink_to(outside, target_is_directory=True)
        c = json.loads((d / "bellm.json").read_text())
        c["model_file"] = "sub/model.onnx"
        (d / "bellm.json").write_text(json.dumps(c))
    else:
        shutil.move(d / what, outside / what)
        (d / what).symlink_to(outside / what)
    with pytest.raises(ExportFormatError, match="outside"):
        OnnxEncoder(d, providers=["CPUExecutionProvider"])
    inside = _export_copy(export_dir, tmp_path / "ok")  # a link that stays inside is fine
    shutil.move(inside / "model.onnx", inside / "model-v1.onnx")
    (inside / "model.onnx").symlink_to("model-v1.onnx")
    assert OnnxEncoder(inside, providers=["CPUExecutionProvider"]).encode("ok").shape == (64,)


# --- issue 29 item 9 --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "value"), [("train.lr", "true"), ("train.max_steps", "1e18"),
                                            ("train.max_steps", "1e23"), ("train.batch_size", "8.0"),
                                            ("encoder.max_length", "false")])
def test_numbers_are_strict(key: str, value: str) -> None:
    """`--set train.lr=true` became 1.0 and `max_steps=1e18` an integer."""
    from bellm.config import ConfigError
    from bellm.profiles import build_config, parse_override

    keys, v = parse_override(f"{key}={value}")
    with pytest.raises(ConfigError, match=key.split(".")[1]):
        build_config("quick", {key: v})
    assert build_config("quick", {"train.lr": 1, "train.max_steps": 200}).train.lr == 1.0  # an int is a number


@pytest.mark.parametrize(("field", "value"), [("dim", 999), ("num_layers", 40)])
def test_adapter_descriptor_must_describe_the_model(adapter: Path, tmp_path: Path, field: str, value: int) -> None:
    import json
    import shutil

    bad = tmp_path / "adapter"
    shutil.copytree(adapter, bad)
    c = json.loads((bad / "bellm.json").read_text())
    c[field] = value
    (bad / "bellm.json").write_text(json.dumps(c))
    (tmp_path / "in.txt").write_text("hello\n")
    r = CliRunner().invoke(_cli(), ["encode", str(tmp_path / "in.txt"), "-o", str(tmp_path / "e.npy"),
                                    "--adapter", str(bad)])
    _one_error_line(r, f"{field} {value}")


def test_a_directory_as_champion_pointer_is_an_error_and_never_deleted(tmp_path: Path) -> None:
    from test_registry import passed_run

    from bellm.registry import RegistryError, champion, promote

    run = passed_run(tmp_path, 70.0)
    (tmp_path / "champion" / "notes").mkdir(parents=True)
    with pytest.raises(RegistryError, match="not a plain file"):
        champion(tmp_path)
    for force in (False, True):
        with pytest.raises(RegistryError, match="not a plain file"):
            promote(run.id, tmp_path, force=force)
    assert (tmp_path / "champion" / "notes").is_dir()


def test_runs_gc_deletes_only_bellm_s_own_dead_leftovers(tmp_path: Path) -> None:
    """`runs gc` deleted any hidden directory whose name contains `.old-`, a user's included."""
    import subprocess
    import sys

    from bellm.io import remove_leftovers

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    (tmp_path / "onnx").mkdir()
    keep = [tmp_path / ".notes.old-draft", tmp_path / f".onnx.old-{os.getpid()}",  # a user's; a live writer's
            tmp_path / f".gone.old-{p.pid}", tmp_path / ".mine.tmp"]  # the only copy of `gone`; a user's
    drop = [tmp_path / f".onnx.old-{p.pid}",  # a dead writer's, beside its replacement
            tmp_path / ".onnx.k2x_9abc.tmp"]  # an older bellm's temp directory (no pid in its name)
    for d in [*keep, *drop]:
        (d / "x").mkdir(parents=True)
    assert set(remove_leftovers(tmp_path)) == set(drop)
    assert all(d.is_dir() for d in keep)


def test_serve_champion_names_the_other_settings_champions(tmp_path: Path) -> None:
    from test_registry import GATED, passed_run

    from bellm.registry import promote
    from bellm.runtime import ExportFormatError
    from bellm.serve import resolve_target

    small = passed_run(tmp_path, 80.0, config={**GATED, "data": {"max_eval_pairs": 48}})
    promote(small.id, tmp_path)
    with pytest.raises(ExportFormatError, match=f"no champion for the default setting.*{small.id}"):
        resolve_target("champion", artifacts=tmp_path)
