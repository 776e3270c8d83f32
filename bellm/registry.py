"""The artifacts registry: one directory per run, a manifest with status, and champion pointers.

Layout (a contract: outside tools read it; documented in artifacts/README.md):

    <root>/runs/<UTC timestamp>-<short id>/manifest.json   profile, setting, config, data sha256s, code
                                                           version, owner + heartbeat, timings, gates, status,
                                                           decisions (the dev files each decision read)
                                          metrics.json    {"trained": r, "zero_shot": r, "onnx": {variant: r}}
                                          report.md, *.png, adapter/, onnx/<variant>/
    <root>/champions/<setting key>                         one line: the champion run of that setting
    <root>/champion                                        one line: the champion of the default setting

A *setting* (profile + model + report suite + eval pair cap) is what makes two runs comparable; each has
its own champion. Every write is atomic; promotion happens under a file lock on the registry, after
re-reading the champion and re-checking the run's gates against it, so two concurrent flows cannot
both win. A run that fails is marked `failed`, a run whose process died is marked `interrupted` on the
next registry access; neither becomes champion without `--force` and a recorded reason.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bellm.errors import InputError
from bellm.io import remove_leftovers, sha256_text, write_json_atomic, write_text_atomic
from bellm.liveness import now_iso, owner_dead, owner_record
from bellm.locks import file_lock
from bellm.paths import REPO_ROOT, artifacts_dir

STATUSES = ("running", "failed", "passed", "interrupted")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
LOCK_FILE = ".registry.lock"
LOCK_WAIT_S = 120.0


class RegistryError(InputError):
    pass


def check_run_id(run_id: str) -> str:
    """A run id is one safe path component (`<timestamp>-<hex>`): never a path that walks out of runs/."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise RegistryError(f"invalid run id {run_id!r}: letters, digits, '-' and '_' only "
                            "(e.g. 20250101T000000Z-abc123)")
    return run_id


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RegistryError(f"{path}: unreadable {what} ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{path}: {what} is not a JSON object")
    return doc


@dataclass(frozen=True)
class Run:
    id: str
    dir: Path

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest; `RegistryError` (not a traceback) when it is corrupt."""
        return _read_json(self.dir / "manifest.json", "manifest")

    @property
    def metrics(self) -> dict[str, Any] | None:
        p = self.dir / "metrics.json"
        return _read_json(p, "metrics") if p.is_file() else None


def root_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root) if root else artifacts_dir()


@contextlib.contextmanager
def registry_lock(root: str | os.PathLike[str] | None = None, timeout: float | None = LOCK_WAIT_S) -> Iterator[None]:
    """Exclusive lock on the registry (promotion, marking dead runs, gc)."""
    with file_lock(root_dir(root) / LOCK_FILE, timeout=timeout, what=f"the registry {root_dir(root)}"):
        yield


def code_version() -> str:
    """The git commit of the code that ran (with `-dirty` when the tree has local changes); outside a git
    checkout (a container image) the commit it was built from, `$BELLM_COMMIT`."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BELLM_COMMIT") or "unknown"


# ------------------------------------------------------------------------------------------- settings


def setting_of(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs comparable: profile, base model, report suite and evaluation pair cap."""
    return {
        "profile": config.get("profile"),
        "model": (config.get("model") or {}).get("source"),
        "suite": (config.get("eval") or {}).get("report_suite"),
        "max_eval_pairs": (config.get("data") or {}).get("max_eval_pairs"),
    }


def setting_key(setting: dict[str, Any]) -> str:
    """`<profile>-<hash>`: the file name of a setting's champion pointer under `champions/`."""
    profile = re.sub(r"[^A-Za-z0-9_]", "_", str(setting.get("profile")))
    return f"{profile}-{sha256_text(json.dumps(setting, sort_keys=True))[:12]}"


def default_setting() -> dict[str, Any]:
    """The setting of a plain `bellm run` (quick profile, no overrides): its champion is `<root>/champion`."""
    from bellm.profiles import build_config

    return setting_of(build_config("quick").model_dump(mode="json"))


def _pointer(root: Path, setting: dict[str, Any] | None) -> Path:
    if setting is None or setting == default_setting():
        return root / "champion"
    return root / "champions" / setting_key(setting)


# ------------------------------------------------------------------------------------------- runs


def new_run(root: str | os.PathLike[str] | None, profile: str, config: dict[str, Any]) -> Run:
    """Create `runs/<timestamp>-<id>/` with a `running` manifest owned by this process."""
    mark_dead_runs(root)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    run_dir = root_dir(root) / "runs" / run_id
    run_dir.mkdir(parents=True)
    manifest = {
        "id": run_id,
        "profile": profile,
        "setting": setting_of(config),
        "status": "running",
        "created": now_iso(),
        "owner": owner_record(),
        "heartbeat": now_iso(),
        "code_version": code_version(),
        "config": config,
        "data": {},
        "timings": {},
        "gates": {},
        "published_variants": [],
    }
    write_json_atomic(run_dir / "manifest.json", manifest)
    return Run(run_id, run_dir)


def update_manifest(run: Run, **fields: Any) -> dict[str, Any]:
    """Merge fields into the manifest (dict fields are merged one level deep), under the run's lock."""
    with file_lock(run.dir / ".lock", timeout=LOCK_WAIT_S, what=f"run {run.id}"):
        manifest = run.manifest
        for key, value in fields.items():
            if isinstance(value, dict) and isinstance(manifest.get(key), dict):
                manifest[key] = {**manifest[key], **value}
            else:
                manifest[key] = value
        if manifest.get("status") not in STATUSES:
            raise RegistryError(f"bad status {manifest.get('status')!r}")
        if manifest["status"] == "running" and "heartbeat" not in fields:
            manifest["heartbeat"] = now_iso()
        write_json_atomic(run.dir / "manifest.json", manifest)
    return manifest


def get_run(run_id: str, root: str | os.PathLike[str] | None = None) -> Run:
    d = root_dir(root) / "runs" / check_run_id(run_id)
    if not (d / "manifest.json").is_file():
        raise RegistryError(f"no run {run_id!r} under {root_dir(root) / 'runs'}")
    return Run(run_id, d)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[Run]:
    """Every run directory with a manifest file (readable or not: reading is the caller's business)."""
    runs_dir = root_dir(root) / "runs"
    if not runs_dir.is_dir():
        return []
    return [
        Run(d.name, d)
        for d in sorted(runs_dir.iterdir())
        if RUN_ID.fullmatch(d.name) and (d / "manifest.json").is_file()
    ]


def mark_dead_runs(root: str | os.PathLike[str] | None = None) -> list[tuple[Run, str]]:
    """Mark `running` runs whose process is gone as `interrupted` (and drop any ONNX they published).
    Runs on every registry write; returns the runs marked and why."""
    if not (root_dir(root) / "runs").is_dir():
        return []
    marked: list[tuple[Run, str]] = []
    with registry_lock(root):
        for run in list_runs(root):
            try:
                man = run.manifest
            except RegistryError:
                continue
            why = owner_dead(run.dir, man) if man.get("status") == "running" else None
            if why:
                _drop_onnx(run.dir)
                update_manifest(run, status="interrupted", error=f"interrupted: {why}; marked on {now_iso()}")
                marked.append((run, why))
    return marked


def _drop_onnx(run_dir: Path) -> bool:
    """Delete a run's ONNX export; a symbolic link is removed, never followed (what it points to is not the
    run's), and nothing is deleted in a run directory that is itself a link. Whether one was deleted."""
    onnx = run_dir / "onnx"
    if run_dir.is_symlink():  # the run lives elsewhere: never delete through the link
        return False
    if onnx.is_symlink():
        onnx.unlink()
        return True
    if onnx.exists():
        shutil.rmtree(onnx)
        return True
    return False


def gc(root: str | os.PathLike[str] | None = None) -> dict[str, list[str]]:
    """Mark dead runs, delete temp directories of killed writers, and ONNX models of runs that did not pass."""
    interrupted = [r.id for r, _ in mark_dead_runs(root)]
    removed: list[str] = []
    with registry_lock(root):
        removed += [str(p) for p in remove_leftovers(root_dir(root))]
        for run in list_runs(root):
            try:
                status = run.manifest.get("status")
            except RegistryError:
                continue
            if status in ("failed", "interrupted") and _drop_onnx(run.dir):
                removed.append(str(run.dir / "onnx"))
    return {"interrupted": interrupted, "removed": removed}


# ------------------------------------------------------------------------------------------- champion


def _pointer_exists(p: Path) -> bool:
    """Whether a champion pointer is there; something that is not a plain file is an error, never "no champion"
    (promotion would otherwise replace, and so delete, a directory standing in its place)."""
    if not os.path.lexists(p):
        return False
    if p.is_symlink() or not p.is_file():
        raise RegistryError(f"{p} is not a plain file (a champion pointer holds one run id): move it away")
    return True


def other_champions(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Run ids of the champions of non-default settings (`champions/<setting key>`)."""
    d = root_dir(root) / "champions"
    if not d.is_dir():
        return []
    return sorted({p.read_text(encoding="utf-8", errors="replace").strip() for p in d.iterdir()
                   if p.is_file() and not p.is_symlink() and not p.name.startswith(".")} - {""})


def champion(root: str | os.PathLike[str] | None = None, setting: dict[str, Any] | None = None) -> Run | None:
    """The champion run of `setting` (default: the default setting's `champion` file), or None.
    A pointer naming a missing or malformed run is a `RegistryError`, never "no champion"."""
    p = _pointer(root_dir(root), setting)
    if not _pointer_exists(p):
        return None
    run_id = p.read_text(encoding="utf-8", errors="replace").strip()
    if not run_id:
        raise RegistryError(f"{p} is empty: fix or delete it")
    try:
        return get_run(run_id, root)
    except RegistryError as e:
        raise RegistryError(f"{p} points at a run that cannot be read: {e}") from None


def champion_result(
    root: str | os.PathLike[str] | None = None, setting: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The champion's trained-model evaluation result (for regression gates); None when there is no
    champion yet. A champion without a readable `metrics.json` is an error: it must not disable the gate."""
    run = champion(root, setting)
    if run is None:
        return None
    metrics = run.metrics
    if not metrics or not isinstance(metrics.get("trained"), dict):
        raise RegistryError(f"champion {run.id} has no readable metrics.json with a 'trained' result; "
                            "its regression gate cannot be checked (promote another run or fix the file)")
    result = dict(metrics["trained"])
    gate = metrics.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("tasks"), dict):
        result["tasks"] = {**gate["tasks"], **result.get("tasks", {})}
    return result


def decision_result(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A run's decision result: metrics.json's `gate` (the dev splits of `eval.gate_suite`), never its `trained`
    full-suite result (test splits, reported only); None when the run has none."""
    gate = metrics.get("gate")
    return dict(gate) if isinstance(gate, dict) and isinstance(gate.get("tasks"), dict) else None


def _decision_files(run: Run) -> dict[str, Any]:
    """What the promotion check read (the run's decision result; the champion is compared on the same tasks)."""
    result = decision_result(run.metrics or {}) or {}
    return {"suite": result.get("suite"), "data_sha256": result.get("data_sha256") or {}}


def _promotion_check(run: Run, manifest: dict[str, Any], current: dict[str, Any] | None) -> dict[str, Any]:
    """Re-check a passed run's gates for promotion: at least one absolute gate and a regression limit
    must be configured, and the run's decision result (dev splits) must pass them against the champion read
    under the lock (compared on the dev tasks both have: `bellm.gates.check_gates`)."""
    from bellm.config import GateConfig
    from bellm.gates import check_gates

    try:
        gates = GateConfig.model_validate(((manifest.get("config") or {}).get("eval") or {}).get("gates") or {})
    except ValueError as e:
        raise RegistryError(f"run {run.id}: unreadable gate config ({e})") from None
    if not gates.min_task and gates.min_avg is None:
        raise RegistryError(f"run {run.id} had no absolute quality gate (eval.gates.min_task or min_avg): "
                            "a model is promoted only on a measured minimum")
    if gates.max_regression is None and gates.max_task_regression is None:
        raise RegistryError(f"run {run.id} had no regression limit (eval.gates.max_regression or "
                            "max_task_regression): a model is promoted only if it does not regress")
    metrics = run.metrics
    if not metrics or not isinstance(metrics.get("trained"), dict):
        raise RegistryError(f"run {run.id} has no metrics.json with a 'trained' result")
    result = decision_result(metrics)
    if result is None:
        raise RegistryError(f"run {run.id} has no decision result (metrics.json 'gate', the dev splits of "
                            "eval.gate_suite): a model is promoted on development data only")
    verdict = check_gates(result, gates, current)
    if not verdict.passed:
        raise RegistryError(f"run {run.id} cannot be champion: {verdict.summary()}")
    return verdict.to_dict()


def promote(
    run_id: str, root: str | os.PathLike[str] | None = None, force: bool = False, reason: str | None = None
) -> Run:
    """Make a run the champion of its setting. Without `force`: it must have passed, not be a smoke run,
    and pass its absolute and regression gates against the champion as it is *now* (read under the lock).
    `force` skips the checks; forcing a run that did not pass needs a `reason`, recorded in its manifest."""
    check_run_id(run_id)
    mark_dead_runs(root)
    with registry_lock(root):
        run = get_run(run_id, root)
        manifest = run.manifest
        setting = manifest.get("setting") or setting_of(manifest.get("config") or {})
        status = manifest.get("status")
        record: dict[str, Any] = {"at": now_iso(), "setting": setting, "forced": force}
        if force:
            if status != "passed" and not (reason and reason.strip()):
                raise RegistryError(f"run {run_id} has status {status!r}: forcing it needs a stated reason (--reason)")
            record.update(reason=reason, by=_user())
        else:
            if status != "passed":
                raise RegistryError(f"run {run_id} has status {status!r}; only passed runs can be champion")
            if manifest.get("profile") == "smoke":
                raise RegistryError(f"run {run_id} is a smoke run; smoke runs never become champion")
            current = champion(root, setting)
            against = None if current is None or current.id == run_id else champion_result(root, setting)
            record.update(previous=current.id if current else None,
                          check=_promotion_check(run, manifest, against))
        pointer = _pointer(root_dir(root), setting)
        _pointer_exists(pointer)  # --force reads no champion: still never replace a directory
        write_text_atomic(pointer, run_id + "\n")
        decided = {} if force else {"decisions": {"promotion": _decision_files(run)}}
        update_manifest(run, promotion=record, **decided)
    return run


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
