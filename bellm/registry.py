"""The artifacts registry: one directory per run, a manifest with status, and a champion pointer.

Layout (a contract: outside tools read it; documented in artifacts/README.md):

    <root>/runs/<UTC timestamp>-<short id>/manifest.json   profile, config, data sha256s, code version,
                                                           per-step timings, gate verdicts, status
                                          metrics.json    {"trained": r, "zero_shot": r, "onnx": {variant: r}}
                                          report.md, *.png, adapter/, onnx/<variant>/
    <root>/champion                                        one line: the champion run's id

Every write is atomic; a run that fails is marked `failed` and never becomes champion.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bellm.io import write_json_atomic, write_text_atomic
from bellm.paths import REPO_ROOT, artifacts_dir

STATUSES = ("running", "failed", "passed")


class RegistryError(ValueError):
    pass


@dataclass(frozen=True)
class Run:
    id: str
    dir: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.dir / "manifest.json").read_text())

    @property
    def metrics(self) -> dict[str, Any] | None:
        p = self.dir / "metrics.json"
        return json.loads(p.read_text()) if p.is_file() else None


def root_dir(root: str | os.PathLike[str] | None = None) -> Path:
    return Path(root) if root else artifacts_dir()


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


def new_run(root: str | os.PathLike[str] | None, profile: str, config: dict[str, Any]) -> Run:
    """Create `runs/<timestamp>-<id>/` with a `running` manifest."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    run_dir = root_dir(root) / "runs" / run_id
    run_dir.mkdir(parents=True)
    manifest = {
        "id": run_id,
        "profile": profile,
        "status": "running",
        "created": datetime.now(UTC).isoformat(),
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
    """Merge fields into the manifest (dict fields are merged one level deep)."""
    manifest = run.manifest
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(manifest.get(key), dict):
            manifest[key] = {**manifest[key], **value}
        else:
            manifest[key] = value
    if manifest.get("status") not in STATUSES:
        raise RegistryError(f"bad status {manifest.get('status')!r}")
    write_json_atomic(run.dir / "manifest.json", manifest)
    return manifest


def get_run(run_id: str, root: str | os.PathLike[str] | None = None) -> Run:
    d = root_dir(root) / "runs" / run_id
    if not (d / "manifest.json").is_file():
        raise RegistryError(f"no run {run_id!r} under {root_dir(root) / 'runs'}")
    return Run(run_id, d)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[Run]:
    runs_dir = root_dir(root) / "runs"
    if not runs_dir.is_dir():
        return []
    return [Run(d.name, d) for d in sorted(runs_dir.iterdir()) if (d / "manifest.json").is_file()]


def champion(root: str | os.PathLike[str] | None = None) -> Run | None:
    p = root_dir(root) / "champion"
    if not p.is_file():
        return None
    run_id = p.read_text().strip()
    return get_run(run_id, root) if run_id else None


def champion_result(root: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """The champion's trained-model evaluation result (for regression gates), or None."""
    run = champion(root)
    metrics = run.metrics if run else None
    return metrics.get("trained") if metrics else None


def promote(run_id: str, root: str | os.PathLike[str] | None = None, force: bool = False) -> Run:
    """Point `champion` at a run that passed every gate (smoke runs never compete)."""
    run = get_run(run_id, root)
    manifest = run.manifest
    if not force:
        if manifest.get("status") != "passed":
            raise RegistryError(f"run {run_id} has status {manifest.get('status')!r}; only passed runs can be champion")
        if manifest.get("profile") == "smoke":
            raise RegistryError(f"run {run_id} is a smoke run; smoke runs never become champion")
    write_text_atomic(root_dir(root) / "champion", run_id + "\n")
    return run
