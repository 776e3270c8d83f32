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


def _checkout(root: Path) -> Path:
    """A second checkout's data directory: the same STS-B files under another repository root."""
    for split in ("train", "dev"):
        dest = root / "data" / "sts" / "stsb" / f"{split}.tsv"
        dest.parent.mkdir(parents=True, exist_ok=True)
        lines = (paths.STS_DIR / "stsb" / f"{split}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
        dest.write_text("".join(lines[:40]), encoding="utf-8")
    return root


def test_cache_keys_are_the_same_in_two_checkouts(tmp_path: Path, monkeypatch) -> None:
    """The same configuration run from two checkouts is one training and one evaluation cache entry: data files
    enter the keys by repo-relative name (the keys used to differ by the checkout's absolute data paths)."""
    from bellm.config import RunConfig
    from bellm.keys import suite_data_sha256, train_key
    from bellm.trial import prepare_data

    keys = []
    for name in ("checkout-a", "checkout-b"):
        root = _checkout(tmp_path / name)
        monkeypatch.setattr(paths, "REPO_ROOT", root)
        sts = root / "data" / "sts" / "stsb"
        cfg = RunConfig.model_validate({"data": {"train_pairs": [str(sts / "train.tsv")], "train_triplets": [],
                                                 "dev_pairs": str(sts / "dev.tsv")}})
        data = prepare_data(cfg)
        assert set(data["sha256"]) == {"data/sts/stsb/train.tsv", "data/sts/stsb/dev.tsv"}
        keys.append((train_key(cfg, data["sha256"], "base"), suite_data_sha256([str(sts / "dev.tsv")])))
    assert keys[0] == keys[1]
