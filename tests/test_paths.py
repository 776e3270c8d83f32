"""State defaults: a source checkout keeps everything in the repo; an installed wheel never writes into
site-packages (user cache dir for the home, the current directory for the registry and data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bellm import paths

CODE = ("import json; from bellm import paths; print(json.dumps({'home': str(paths.bellm_home()), "
        "'arts': str(paths.artifacts_dir()), 'data': str(paths.DATA_DIR), 'checkout': paths.IN_CHECKOUT}))")


def _defaults(site: Path, cwd: Path, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BELLM_HOME", "BELLM_ARTIFACTS", "BELLM_DATA", "XDG_CACHE_HOME")}
    env.update(PYTHONPATH=str(site), HOME=str(home))
    out = subprocess.run([sys.executable, "-c", CODE], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_checkout_defaults_stay_in_the_repo() -> None:
    assert paths.IN_CHECKOUT
    assert paths.DATA_DIR == paths.REPO_ROOT / "data" or os.environ.get("BELLM_DATA")


def test_installed_package_defaults_to_user_cache_and_cwd(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "bellm").mkdir(parents=True)
    for name in ("__init__.py", "paths.py"):
        shutil.copy(Path(paths.__file__).parent / name, site / "bellm" / name)
    cwd, home = tmp_path / "work", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    got = _defaults(site, cwd, home)
    assert got["checkout"] is False
    assert got["home"] == str(home / ".cache" / "bellm")
    assert got["arts"] == str(cwd / "artifacts") and got["data"] == str(cwd / "data")
    assert not (site / ".bellm").exists() and not (site / "artifacts").exists()
