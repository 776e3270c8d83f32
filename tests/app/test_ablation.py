"""Ablation: the paired bootstrap, the grid, and a resumable sweep (kill -9 after one trial, restart)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bellm.ablation import (
    AblationConfig,
    bootstrap_all,
    conclusion,
    dev_choice,
    grid,
    paired_bootstrap,
    table_rows,
    to_csv,
    to_markdown,
)

REPO = Path(__file__).resolve().parents[2]


def test_grid_needs_baseline() -> None:
    assert [t.name for t in grid(AblationConfig(ks=[2, 0], poolings=["mean"]))] == ["k0-mean", "k2-mean"]
    with pytest.raises(ValueError, match="k=0"):
        grid(AblationConfig(ks=[1, 2]))


def test_paired_bootstrap_detects_real_differences_only() -> None:
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 400)
    base = gold + rng.normal(0, 2.0, 400)
    same = paired_bootstrap({"t": base}, {"t": base}, {"t": gold}, n=200)
    assert same["t"]["delta"] == 0 and same["t"]["lo"] == 0 and same["t"]["hi"] == 0
    assert not same["avg"]["significant"]
    better = gold + rng.normal(0, 0.5, 400)
    res = paired_bootstrap({"t": better}, {"t": base}, {"t": gold}, n=300)
    assert res["t"]["delta"] > 10 and res["t"]["lo"] > 0 and res["t"]["significant"]
    noise = base + rng.normal(0, 0.05, 400)
    res = paired_bootstrap({"t": noise}, {"t": base}, {"t": gold}, n=300)
    assert res["t"]["lo"] < 0 < res["t"]["hi"] and not res["t"]["significant"]
    with pytest.raises(ValueError, match="pair counts"):
        paired_bootstrap({"t": base[:10]}, {"t": base}, {"t": gold})


def test_table_rows_and_formats() -> None:
    trials = {
        "k0-mean": {"k": 0, "pooling": "mean", "trained": {"tasks": {"stsb": {"spearman": 50.0}}, "avg": 50.0}},
        "k2-mean": {"k": 2, "pooling": "mean", "trained": {"tasks": {"stsb": {"spearman": 55.0}}, "avg": 55.0}},
    }
    cis = {"trained:k2-mean": {"avg": {"delta": 5.0, "lo": 1.0, "hi": 9.0, "significant": True}}}
    rows = table_rows(trials, cis)
    assert rows[1]["delta_vs_k0"] == 5.0 and rows[1]["significant"] == "yes" and rows[0]["significant"] is None
    assert "| k2-mean |" in to_markdown(rows) and to_csv(rows).startswith("trial,k,pooling")


def test_bootstrap_all_pairs_each_trial_with_k0_of_its_pooling_and_conclusion_reads_it() -> None:
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, 400)
    raw = {
        "k0-mean": gold + rng.normal(0, 2.0, 400),  # weak
        "k2-mean": gold + rng.normal(0, 0.5, 400),  # clearly better than k0-mean
        "k2-last": gold + rng.normal(0, 2.0, 400),  # no k0-last baseline: not bootstrapped
    }
    trials = {
        n: {
            "k": int(n[1]),
            "pooling": n.split("-")[1],
            "trained_raw": {"cosines": {"stsb": v.tolist()}, "gold": {"stsb": gold.tolist()}},
        }
        for n, v in raw.items()
    }
    cis = bootstrap_all(trials, n=200, seed=0)
    assert set(cis) == {"trained:k2-mean"} and cis["trained:k2-mean"]["avg"]["significant"]
    rows = [
        {"k": 2, "pooling": "mean", "significant": "yes", "delta_vs_k0": 3.1, "ci95": "[2.0, 4.2]"},
        {"k": 1, "pooling": "mean", "significant": "yes", "delta_vs_k0": -1.0, "ci95": "[-2, -0.1]"},
        {"k": 3, "pooling": "mean", "significant": "no", "delta_vs_k0": 0.2, "ci95": "[-1, 1.4]"},
        {"k": 0, "pooling": "mean", "significant": None},
    ]
    assert conclusion(rows) == [
        "- k=2, mean: Δ avg +3.10 [2.0, 4.2] → significantly better than k=0",
        "- k=1, mean: Δ avg -1.00 [-2, -0.1] → significantly worse than k=0",
        "- k=3, mean: Δ avg +0.20 [-1, 1.4] → not distinguishable from k=0",
    ]


def test_the_pooling_is_chosen_on_dev_and_the_unseen_average_is_reported() -> None:
    """docs/ablation.md's issue-11 numbers (means over two seeds): the test average favours `last` (77.77 vs
    77.23), dev favours `last_mean_span` (84.70 vs 84.48). The choice follows dev (issue 26); STS12-16 get their
    own average column beside the 7-task one."""
    def trial(k: int, pooling: str, dev: float, avg: float) -> dict:
        tasks = {t: {"spearman": avg + i} for i, t in enumerate(("sts12", "sts13", "sts14", "sts15", "sts16"))}
        tasks.update(stsb={"spearman": avg}, sickr={"spearman": avg})
        return {"k": k, "pooling": pooling, "trained": {"tasks": tasks, "avg": avg},
                "trained_selection": {"tasks": {"stsb_dev": {"spearman": dev}}, "avg": dev}}

    trials = {"k0-last_mean_span": trial(0, "last_mean_span", 84.62, 77.19),
              "k2-last_mean_span": trial(2, "last_mean_span", 84.70, 77.23),
              "k0-last": trial(0, "last", 84.49, 77.77), "k2-last": trial(2, "last", 84.48, 77.77)}
    rows = table_rows(trials, {})
    assert dev_choice(rows, "gate") == ("- chosen on dev (gate): k=2, last_mean_span (dev 84.70; best last: k=0, dev "
                                        "84.49, +0.21); the table's test columns are reported and did not choose")
    assert rows[0]["STS12-16 avg"] == pytest.approx(77.19 + 2.0) and list(rows[0]).index("STS12-16 avg") == \
        list(rows[0]).index("avg") + 1
    assert dev_choice([{"k": 0, "pooling": "last", "dev": None}]) is None
    with pytest.raises(ValueError, match="is a test split"):
        AblationConfig(selection_suite="stsb")


def _ablate_cmd(tiny: Path, arts: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "bellm"),
        "ablate",
        "--ks",
        "0,1,2",
        "--poolings",
        "mean",
        "--steps",
        "2",
        "--table-suite",
        "stsb",
        "--max-eval-pairs",
        "16",
        "--no-zero-shot",
        "--bootstrap",
        "100",
        "--set",
        f"model.source={tiny}",
        "--set",
        f"artifacts_dir={arts}",
        "--set",
        "data.max_train_pairs=16",
        "--set",
        "data.max_train_triplets=16",
        "--set",
        "train.batch_size=4",
        "--set",
        "train.warmup_steps=0",
        "--set",
        "lora.layers=null",
        "--set",
        "encoder.keep_layers=null",
        "--set",
        "train.checkpoint_every=1",
    ]


def test_sweep_resumes_only_missing_trials(tiny_model_dir: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BELLM_HOME": str(tmp_path / "home"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    cmd = _ablate_cmd(tiny_model_dir, tmp_path / "arts")
    train_root = tmp_path / "home" / "train"
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 300
    # Trials run in order; a second training directory means the first trial finished (result persisted).
    while time.time() < deadline and proc.poll() is None:
        if train_root.is_dir() and len(list(train_root.iterdir())) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    states = summary["trial_states"]
    assert states["trained:k0-mean"] == "Cached", states
    assert states["trained:k1-mean"] != "Cached" and states["trained:k2-mean"] != "Cached", states
    out = Path(summary["dir"])
    assert (out / "ablation.md").is_file() and (out / "ablation.png").is_file()
    assert "k2-mean" in (out / "ablation_trained.csv").read_text()


def test_paired_bootstrap_over_seeds_averages_per_seed_deltas() -> None:
    rng = np.random.default_rng(1)
    gold = rng.uniform(0, 5, 300)
    base = [gold + rng.normal(0, 2.0, 300) for _ in range(2)]
    trial = [gold + rng.normal(0, 0.5, 300), base[1]]  # seed 1 much better, seed 2 identical to its base
    res = paired_bootstrap([{"t": x} for x in trial], [{"t": x} for x in base], {"t": gold}, n=200)
    one = paired_bootstrap({"t": trial[0]}, {"t": base[0]}, {"t": gold}, n=200)
    assert res["avg"]["by_seed"] == [one["avg"]["delta"], 0.0]
    assert res["t"]["delta"] == pytest.approx(one["t"]["delta"] / 2, abs=1e-3)
    with pytest.raises(ValueError, match="seed counts"):
        paired_bootstrap([{"t": trial[0]}], [{"t": x} for x in base], {"t": gold})


def test_mean_over_seeds_and_seed_columns() -> None:
    from bellm.ablation import mean_over_seeds

    runs = [{"tasks": {"stsb": {"spearman": 70.0}}, "avg": 70.0}, {"tasks": {"stsb": {"spearman": 72.0}}, "avg": 72.0}]
    mean = mean_over_seeds(runs)
    assert mean["tasks"]["stsb"]["spearman"] == 71.0 and mean["avg"] == 71.0 and mean["by_seed"] == [70.0, 72.0]
    trials = {
        "k0-last": {"k": 0, "pooling": "last", "trained": mean},
        "k2-last": {"k": 2, "pooling": "last", "trained": mean},
    }
    cis = {
        "trained:k2-last": {"avg": {"delta": 0.5, "lo": -0.1, "hi": 1.1, "significant": False, "by_seed": [0.9, 0.1]}}
    }
    rows = table_rows(trials, cis)
    assert rows[1]["avg_by_seed"] == "70.00 / 72.00" and rows[1]["delta_by_seed"] == "+0.90 / +0.10"
    assert rows[0]["delta_by_seed"] is None
    with pytest.raises(ValueError, match="distinct"):
        AblationConfig(seeds=[1, 1])


def test_ablation_flow_runs_each_trained_trial_once_per_seed(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Two seeds: four trained trials (k0, k1 × seeds), the table is their seed mean with each seed's
    avg and Δ shown, and a rerun with one of the seeds reuses its cached trials."""
    from prefect.testing.utilities import prefect_test_harness

    monkeypatch.setenv("BELLM_HOME", str(tmp_path / "home"))
    from bellm_app.flows.ablation import bellm_ablation

    overrides = {
        "model.source": str(tiny_model_dir),
        "artifacts_dir": str(tmp_path / "arts"),
        "data.max_train_pairs": 16,
        "train.batch_size": 4,
        "train.warmup_steps": 0,
        "lora.layers": None,
        "encoder.keep_layers": None,
    }
    abl = {
        "ks": [0, 1],
        "poolings": ["mean"],
        "steps": 2,
        "table_suite": ["stsb"],
        "max_eval_pairs": 16,
        "zero_shot": False,
        "bootstrap": 100,
    }
    with prefect_test_harness(server_startup_timeout=120):
        out = bellm_ablation(profile="quick", overrides=overrides, ablation={**abl, "seeds": [1, 2]})
        again = bellm_ablation(profile="quick", overrides=overrides, ablation={**abl, "seeds": [2]})
    assert set(out["trial_states"]) == {f"trained:k{k}-mean:s{s}" for k in (0, 1) for s in (1, 2)}
    row = out["rows"]["trained"][1]
    assert row["trial"] == "k1-mean" and len(row["avg_by_seed"].split(" / ")) == 2
    assert len(row["delta_by_seed"].split(" / ")) == 2
    first, second = (float(x) for x in row["avg_by_seed"].split(" / "))
    assert first != second  # the seed reaches training: two different models
    assert row["avg"] == pytest.approx((first + second) / 2, abs=0.01)
    assert again["trial_states"] == {"trained:k0-mean": "Cached", "trained:k1-mean": "Cached"}
    assert "seeds 1, 2" in (Path(out["dir"]) / "ablation.md").read_text()
    saved = json.loads((Path(out["dir"]) / "ablation.json").read_text())["trials"]["k1-mean"]
    assert saved["trained_seeds"] == [1, 2] and len(saved["trained_train_by_seed"]) == 2
    assert saved["trained_train"] == saved["trained_train_by_seed"][0]  # the one-seed field keeps its form
