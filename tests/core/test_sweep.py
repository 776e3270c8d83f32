"""Recipe search: refuses test splits, tabulates dev scores, and resumes after kill -9 without recomputing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from bellm.profiles import build_config
from bellm.splits import is_test_split
from bellm.sweep import SweepSpec, learning_curve, table_rows, to_csv, to_markdown, trial_config

REPO = Path(__file__).resolve().parents[2]


def test_test_splits_are_refused_for_selection_and_training() -> None:
    assert is_test_split("data/sts/stsb/test.tsv") and is_test_split("data/sts/sts12/MSRpar.tsv")
    assert not is_test_split("data/sts/stsb/dev.tsv") and not is_test_split("data/sts/sickr/train.tsv")
    with pytest.raises(ValidationError, match="test split"):
        SweepSpec(trials={"a": {}}, dev="data/sts/stsb/test.tsv")
    with pytest.raises(ValidationError, match="test split"):
        SweepSpec(trials={"a": {}}, extra_dev=["data/sts/sickr/test.tsv"])
    spec = SweepSpec(trials={"cheat": {"data.train_pairs": ["data/sts/stsb/test.tsv"]}})
    with pytest.raises(ValueError, match="test split"):
        trial_config(spec, "cheat")
    with pytest.raises(ValidationError, match="slugs"):
        SweepSpec(trials={"../x": {}})


def test_trial_config_applies_overrides_and_curve_settings() -> None:
    spec = SweepSpec(profile="smoke", base={"train.lr": 1e-3}, trials={"a": {"encoder.keep_layers": 3}}, eval_every=7)
    cfg = trial_config(spec, "a")
    assert cfg.train.lr == 1e-3 and cfg.encoder.keep_layers == 3 and cfg.train.eval_every == 7
    assert cfg.data.dev_pairs == spec.dev
    assert cfg.train.select_best == build_config("smoke").train.select_best  # the profile's choice of step


def test_quick_and_its_trials_keep_the_last_step() -> None:
    """A 250-pair curve is too noisy to pick a step (it chose step 60 of 120 by 0.04; the full dev suite preferred
    step 120 by 0.68): the CPU profiles keep the last step, and their sweep trials train the same way."""
    from bellm.paths import REPO_ROOT

    spec = SweepSpec.load(REPO_ROOT / "sweeps" / "nli.json")
    assert not build_config("quick").train.select_best and not build_config("standard").train.select_best
    assert not any(trial_config(spec, t).train.select_best for t in spec.trials)


def test_learning_curve_and_table(tmp_path: Path) -> None:
    log = tmp_path / "train_log.jsonl"
    recs = [{"step": 1, "loss": 2.0, "step_s": 1.5}, {"step": 2, "loss": 1.0, "step_s": 2.5, "dev_spearman": 70.0}]
    log.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert learning_curve(log) == [{"step": 2, "seconds": 4.0, "dev": 70.0}]
    res = [
        {"name": "a", "overrides": {}, "selection": {"stsb_dev": 70.0}, "best_step": 2, "steps": 2,
         "train_seconds": 4.0, "wall_seconds": 9.0, "curve": []},
        {"name": "b", "overrides": {"x": 1}, "selection": {"stsb_dev": 75.0}, "best_step": 2, "steps": 2,
         "train_seconds": 4.0, "wall_seconds": 9.0, "curve": []},
    ]
    rows = table_rows(res, ["stsb_dev"])
    assert [r["trial"] for r in rows] == ["b", "a"]
    last = table_rows([{**res[0], "best_step": 1, "kept_step": 2}], ["stsb_dev"])[0]
    assert (last["kept_step"], last["best_step"]) == (2, 1)
    assert "| b |" in to_markdown(rows) and to_csv(rows).startswith("trial,overrides,dev:stsb_dev")
    assert "a\\|b" in to_markdown([{"trial": "a|b"}])  # a pipe in a cell does not split the table


@pytest.mark.processes  # kills and restarts a `bellm sweep` process
def test_sweep_resumes_after_kill_without_recomputing(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec = {
        "profile": "smoke",
        "base": {"model.source": str(tiny_model_dir), "data.max_train_pairs": 16, "data.max_train_triplets": 16,
                 "train.batch_size": 4, "train.max_steps": 2, "data.max_eval_pairs": 16, "lora.layers": None},
        "eval_every": 1,
        "final_max_pairs": 16,
        "trials": {"first": {}, "second": {"encoder.keep_layers": 3}},
    }
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "BELLM_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "bellm.cli", "sweep", str(spec_file), "-o", str(tmp_path / "out"), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    root = tmp_path / "home" / "sweeps"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # the first trial's result means it is cached
        if list(root.glob("first-*/result.json")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = next(root.glob("first-*/result.json"))
    stamp = first.stat().st_mtime_ns
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert first.stat().st_mtime_ns == stamp  # not recomputed
    second = json.loads(next(root.glob("second-*/result.json")).read_text())
    assert second["steps"] == 2 and second["curve"] and second["selection"]["stsb_dev"] is not None
    out = tmp_path / "out"
    assert (out / "sweep.png").stat().st_size > 0 and "second" in (out / "sweep.csv").read_text()


def test_trial_key_follows_file_contents(tmp_path: Path) -> None:
    """A trial is cached by what determines it: editing a training or selection file gives a new trial."""
    from bellm.sweep import trial_key

    pairs = tmp_path / "train.tsv"
    pairs.write_text("score\tsentence1\tsentence2\n1.0\ta\tb\n")
    spec = SweepSpec(trials={"a": {"data.train_pairs": [str(pairs)]}})
    cfg = trial_config(spec, "a")
    before = trial_key(spec, cfg)
    assert trial_key(spec, cfg) == before
    pairs.write_text("score\tsentence1\tsentence2\n2.0\ta\tb\n")
    assert trial_key(spec, cfg) != before


def test_trial_key_is_the_same_in_every_checkout(tmp_path: Path, monkeypatch) -> None:
    """Selection sets used to enter the key by absolute path: a sweep run from a second checkout (a worktree)
    scored its finished trials again. The same file under another repository root now gives the same key."""
    import shutil

    import bellm.paths
    from bellm.keys import trial_key
    from bellm.paths import REPO_ROOT

    rel = Path("data/sts/stsb/dev.tsv")
    cfg = trial_config(SweepSpec(trials={"a": {}}), "a")
    here = trial_key(cfg, [[str(REPO_ROOT / rel)]], False, 500, {}, "b")
    (tmp_path / rel).parent.mkdir(parents=True)
    shutil.copy(REPO_ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(bellm.paths, "REPO_ROOT", tmp_path)
    assert trial_key(cfg, [[str(tmp_path / rel)]], False, 500, {}, "b") == here


def test_trial_key_follows_the_dev_curve_settings() -> None:
    """The curve's interval and pair cap choose which step's adapter a trial keeps: a sweep with another curve is
    another trial (the key used to leave them out, so a sweep every 60 steps reused a trial selected every 30)."""
    from bellm.sweep import trial_key

    specs = [SweepSpec(trials={"a": {}}, eval_every=e) for e in (30, 60)]
    specs.append(SweepSpec(trials={"a": {"train.eval_max_pairs": 100}}, eval_every=30))
    assert len({trial_key(s, trial_config(s, "a")) for s in specs}) == 3


def test_trial_key_follows_the_code(tmp_path: Path, monkeypatch) -> None:
    """A code fix retrains a trial, as it does every other cached result (the trial key used to leave the code
    out, so a sweep rerun after a fix in the loss or the backbone reported the old numbers)."""
    import bellm.provenance
    from bellm.sweep import trial_key

    spec = SweepSpec(trials={"a": {}})
    cfg = trial_config(spec, "a")
    before = trial_key(spec, cfg)
    monkeypatch.setattr(bellm.provenance, "code_fingerprint", lambda: "another-code-version")
    assert trial_key(spec, cfg) != before


def test_report_lists_every_finished_trial_not_only_those_run_now(tmp_path: Path, monkeypatch) -> None:
    """`bellm sweep SPEC --only b` after `--only a` used to rewrite the report with b alone: a's row was lost."""
    from typer.testing import CliRunner

    from bellm.cli import _register, app
    from bellm.io import write_json_atomic
    from bellm.sweep import RESULT, trial_dir, trials_root

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    spec = SweepSpec(profile="smoke", trials={"a": {"train.lr": 1e-3}, "b": {"train.lr": 3e-4}, "c": {}})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.model_dump_json())
    for name, dev in (("a", 70.0), ("b", 75.0)):  # two finished trials (c never ran)
        done = trial_dir(trials_root(), spec, name) / RESULT
        write_json_atomic(done, {"name": name, "key": "k", "overrides": spec.trials[name], "steps": 2,
                                 "best_step": 2, "train_seconds": 1.0, "wall_seconds": 2.0,
                                 "curve": [{"step": 2, "seconds": 1.0, "dev": dev}],
                                 "selection": {"stsb_dev": dev}})
    _register()
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["sweep", str(spec_file), "--only", "b", "-o", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads((out / "sweep.json").read_text())["results"]] == ["a", "b"]
    assert "| a |" in (out / "sweep.md").read_text() and "2 trials" in (out / "sweep.md").read_text()


def test_prefix_hit_share_tells_which_trial_filled_the_cache() -> None:
    from bellm.trial import prefix_share

    assert prefix_share({"hits": 10, "misses": 5}, {"hits": 40, "misses": 15}) == 0.75  # 30 hits, 10 misses
    assert prefix_share({"hits": 0, "misses": 0}, {"hits": 0, "misses": 64}) == 0.0  # the trial that filled it
    assert prefix_share({"hits": 3, "misses": 3}, {"hits": 3, "misses": 3}) is None  # no frozen prefix / cache off
    trial = {"name": "a", "overrides": {}, "selection": {"stsb_dev": 70.0}, "best_step": 2, "steps": 2,
             "train_seconds": 4.0, "wall_seconds": 9.0, "curve": [], "prefix_hit_share": 0.75}
    row = table_rows([trial], ["stsb_dev"])[0]
    assert row["prefix_hits"] == 0.75


def test_a_sweep_trial_and_the_flows_train_step_share_one_training(tiny_model_dir: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """One configuration is one training, whichever command asked first: `bellm sweep` used to key its trials
    under $BELLM_HOME/sweeps/ and the flow's train step under $BELLM_HOME/train/, so both trained it."""
    import bellm.training.loop
    import bellm_app.tasks.train as tr
    from bellm.models import resolve_source
    from bellm.sweep import run_trial, trials_root
    from bellm.trial import prepare_data

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    base = {"model.source": str(tiny_model_dir), "data.max_train_pairs": 16, "data.max_train_triplets": 16,
            "train.batch_size": 4, "train.max_steps": 2, "lora.layers": None}
    spec = SweepSpec(profile="smoke", base=base, trials={"a": {}}, eval_every=1, final_max_pairs=16)
    swept = run_trial(spec, "a", trials_root(), progress=False)

    # The same configuration as `bellm run -p smoke --set ...` gives it: the flow's train step reuses the training.
    cfg = build_config("smoke", {**base, "train.eval_every": 1, "data.dev_pairs": spec.dev, "train.select_best": True,
                                 "train.progress": False, "train.num_threads": 1})
    monkeypatch.setattr(bellm.training.loop, "train", lambda *a, **k: pytest.fail("trained twice"))
    data, model = prepare_data(cfg)["sha256"], resolve_source(cfg.model.source).sha256
    flow = tr.train_adapter.fn(cfg, data, model)
    assert flow["adapter_dir"] == swept["adapter"] and flow["steps"] == swept["steps"] == 2
    assert tr._cache_key(None, {"cfg": cfg, "data_sha256": data, "base_sha256": model}) == \
        Path(flow["adapter_dir"]).parent.name  # the Prefect cache is keyed by the library's key too


def test_the_table_shows_the_rule_and_keeps_report_only_sets_out_of_it() -> None:
    """The rule (the mean of the deciding dev sets) was computed by hand in docs; it is now the `dev_mean` column
    the rows are sorted by, and a `report_dev` set (the unseen-domain Europarl dev) is a `report:` column outside
    it: a trial that wins only on the report set does not rise."""
    spec = SweepSpec(trials={"a": {}}, extra_dev=["data/nli/dev/pairs.tsv"], report_dev=["data/sts/europarl/dev.tsv"])
    from bellm.sweep import rule_names, scored_sets

    assert scored_sets(spec)[-1] == "data/sts/europarl/dev.tsv" and rule_names(spec) == ["stsb_dev", "dev_pairs"]
    common = {"best_step": 2, "steps": 2, "train_seconds": 4.0, "wall_seconds": 9.0, "curve": []}
    res = [
        {"name": "in-domain", "overrides": {}, "selection": {"stsb_dev": 86.0, "dev_pairs": 40.0,
                                                              "europarl_dev": 50.0}, **common},
        {"name": "unseen", "overrides": {}, "selection": {"stsb_dev": 85.0, "dev_pairs": 40.0,
                                                           "europarl_dev": 70.0}, **common},
    ]
    rows = table_rows(res, rule_names(spec))
    assert [r["trial"] for r in rows] == ["in-domain", "unseen"]
    assert rows[0]["dev_mean"] == 63.0 and rows[1]["report:europarl_dev"] == 70.0
    assert list(rows[0])[2:6] == ["dev:stsb_dev", "dev:dev_pairs", "dev_mean", "report:europarl_dev"]
    with pytest.raises(ValidationError, match="test split"):
        SweepSpec(trials={"a": {}}, report_dev=["data/sts/sickr/test.tsv"])


def test_moving_a_set_from_the_rule_to_the_report_keeps_finished_trials() -> None:
    """A trial's key reads the scored sets in order, whichever list names them: the sweep run with the Europarl
    set among `extra_dev` and the one with it as `report_dev` find the same finished trials."""
    from bellm.sweep import scored_sets

    a = SweepSpec(trials={"t": {}}, extra_dev=["data/sts/sickr/dev.tsv", "data/sts/europarl/dev.tsv"])
    b = SweepSpec(trials={"t": {}}, extra_dev=["data/sts/sickr/dev.tsv"], report_dev=["data/sts/europarl/dev.tsv"])
    assert scored_sets(a) == scored_sets(b)
