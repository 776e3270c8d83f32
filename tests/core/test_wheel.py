"""The installed package: a wheel holds the library (`bellm`) and the Prefect application under one name
(`bellm_app`), never generic top-level names like `tasks` or `flows`, and in a clean virtual environment its
commands and the torch-free runtime import from the wheel alone (not from this checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.processes  # builds a wheel and a virtual environment (~20 s)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out, src = tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "bellm", "bellm_app", "flows", "tasks"):  # setuptools builds in-tree
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(src)], check=True, capture_output=True, cwd=out)
    (whl,) = out.glob("bellm-*.whl")
    return whl


def test_the_wheel_has_two_top_level_packages_and_every_library_module(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"bellm", "bellm_app"}, top
    want = {p.relative_to(ROOT).as_posix() for p in (ROOT / "bellm").rglob("*.py")}
    want |= {f"bellm_app/{p.relative_to(ROOT).as_posix()}" for d in ("flows", "tasks") for p in (ROOT / d).glob("*.py")}
    assert want <= set(names), sorted(want - set(names))  # a new subpackage must be listed in pyproject.toml
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "[bellm.commands]" in entry_points


def test_the_installed_commands_run_from_a_clean_venv(wheel: Path, tmp_path: Path) -> None:
    """The wheel installed (--no-deps) into a fresh venv; its dependencies are borrowed from this interpreter's
    site-packages through a .pth file (appended after the venv's own, so the wheel's `bellm` and its entry points
    win); the working directory is not the checkout, so nothing is imported from it."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, env={**env, "PATH": os.environ["PATH"]})
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # after: bellm is not there

    def run(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    where = run(str(py), "-c", "import bellm, bellm_app.flows; print(bellm.__file__); print(bellm_app.flows.__file__)")
    assert all(line.startswith(str(site)) for line in where.split()), where
    top = run(str(env_dir / "bin" / "bellm"), "--help")
    assert all(cmd in top for cmd in ("run", "ablate", "sweep", "serve", "eval")), top
    assert "--port" in run(str(env_dir / "bin" / "bellm"), "serve", "--help")
    assert "--profile" in run(str(env_dir / "bin" / "bellm"), "run", "--help")
    run(str(py), "-c", "import sys, bellm.runtime; assert 'torch' not in sys.modules")
