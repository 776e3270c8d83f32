"""Scaling out: the runner selection, per-trial isolation, and a real 2-worker Dask cluster (a scheduler and
two worker processes on loopback) running an ablation sweep, including a worker killed mid-trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bellm.isolation import trial_scope, worker_identity
from bellm_app.flows.runners import Runner, usable_cores

REPO = Path(__file__).resolve().parents[2]


def test_runner_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="runner must be one of"):
        Runner("threads")
    with pytest.raises(ValueError, match="needs --runner dask or --runner ray"):
        Runner("sequential", address="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="tcp://"):
        Runner("dask", address="ray://head:10001")
    with pytest.raises(ValueError, match="ray://"):
        Runner("ray", address="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="its own workers"):
        Runner("dask", address="tcp://127.0.0.1:8786", workers=2)
    with pytest.raises(ValueError, match="≥ 1"):
        Runner("dask", threads_per_trial=0)


def test_thread_budget_per_trial() -> None:
    assert Runner().trial_threads() is None and Runner().task_runner() is None
    assert Runner("dask", workers=2).trial_threads() == max(1, usable_cores() // 2)
    assert Runner("dask", workers=2, threads_per_trial=3).trial_threads() == 3
    assert Runner("dask", address="tcp://10.0.0.1:8786").trial_threads() is None  # the cluster's own setting


def test_local_dask_cluster_is_one_single_threaded_process_per_worker() -> None:
    tr = Runner("dask", workers=3).task_runner()
    assert tr.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    assert Runner("dask", address="tcp://127.0.0.1:8786").task_runner().address == "tcp://127.0.0.1:8786"


def test_trial_scope_runs_one_trial_at_a_time_with_its_own_seed_and_threads() -> None:
    import torch

    before = torch.get_num_threads()
    with trial_scope(seed=7, threads=1):
        assert torch.get_num_threads() == 1
        alone = torch.rand(4)
    assert torch.get_num_threads() == before

    entered, release, draws = threading.Event(), threading.Event(), {}

    def holder() -> None:
        with trial_scope(seed=7):
            entered.set()
            release.wait(10)
            draws["a"] = torch.rand(4)

    def other() -> None:
        with trial_scope(seed=8):
            draws["b_started_before_a_finished"] = "a" not in draws
            torch.rand(4)

    a = threading.Thread(target=holder)
    a.start()
    assert entered.wait(10)
    b = threading.Thread(target=other)
    b.start()
    time.sleep(0.3)
    assert "b_started_before_a_finished" not in draws  # blocked: a is still in its trial
    release.set()
    a.join(10)
    b.join(10)
    assert draws["b_started_before_a_finished"] is False
    assert torch.equal(draws["a"], alone)  # seeded per trial: same numbers whatever ran before


def test_a_failed_trial_stops_a_sequential_sweep() -> None:
    """The trials after a failed one do not start (they used to run to the end before the failure surfaced)."""
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    from bellm_app.flows.runners import run_trials

    started: list[int] = []

    @task(retries=0)
    def trial(i: int) -> int:
        started.append(i)
        if i == 1:
            raise RuntimeError("trial 1 is broken")
        return i

    @flow
    def sweep() -> list:
        return run_trials(trial, [{"i": 0}, {"i": 1}, {"i": 2}], Runner("sequential"))

    with prefect_test_harness(server_startup_timeout=120), pytest.raises(RuntimeError, match="trial 1 is broken"):
        sweep()
    assert started == [0, 1]


def test_worker_identity_outside_a_cluster() -> None:
    ident = worker_identity()
    assert ident["pid"] == os.getpid() and "worker" not in ident


# ---- a real Dask cluster -------------------------------------------------------------------------------

STEPS = 8  # long enough for a worker to be killed between two checkpoints, short on the tiny model


def _sweep_cmd(tiny: Path, arts: Path, *runner: str) -> list[str]:
    """A 2-trial trained ablation (k=0 and k=1, mean pooling) on the tiny model, checkpointing every step."""
    sets = {
        "model.source": str(tiny),
        "artifacts_dir": str(arts),
        "data.max_train_pairs": 32,
        "data.max_train_triplets": 32,
        "train.batch_size": 4,
        "train.warmup_steps": 0,
        "lora.layers": None,
        "encoder.keep_layers": None,
        "train.checkpoint_every": 1,
    }
    cmd = [str(Path(sys.executable).parent / "bellm"), "ablate", "--ks", "0,1", "--poolings", "mean"]
    cmd += ["--steps", str(STEPS), "--table-suite", "stsb", "--max-eval-pairs", "16", "--no-zero-shot"]
    cmd += ["--bootstrap", "100", *runner]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return cmd


def _env(root: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "BELLM_HOME": str(root / "home"),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a loaded CI machine
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    env.pop("PREFECT_API_URL", None)
    return env


def _summary(proc: subprocess.CompletedProcess | subprocess.Popen, out: str) -> dict:
    """The CLI's JSON summary line (logs may follow it on the same stream)."""
    assert proc.returncode == 0, out[-6000:]
    return next(json.loads(x) for x in reversed(out.splitlines()) if x.startswith('{"dir"'))


def _numbers(summary: dict) -> tuple[dict, str]:
    """What must not depend on where a trial ran: every trial's scores and training outcome, and the
    table with its bootstrap intervals (computed from the per-pair cosines). Not compared: timings, and the
    adapter's sha256 (PEFT writes `target_modules` in set order, which differs between processes)."""
    out = Path(summary["dir"])
    trials = json.loads((out / "ablation.json").read_text())["trials"]
    numbers = {
        name: {
            "table": t["trained"]["tasks"],
            "dev": t["trained_selection"]["tasks"],
            "train": {k: t["trained_train"][k] for k in ("steps", "final_loss")},
        }
        for name, t in trials.items()
    }
    return numbers, (out / "ablation_trained.csv").read_text()


@pytest.fixture(scope="module")
def sequential_reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """The same two trials, one after another in the CLI's own process."""
    seq = tmp_path_factory.mktemp("sequential")
    cmd = _sweep_cmd(tiny_model_dir, seq / "arts")
    r = subprocess.run(cmd, cwd=REPO, env=_env(seq), capture_output=True, text=True, timeout=900)
    return _numbers(_summary(r, r.stdout + r.stderr))


@pytest.mark.slow
def test_two_trials_run_on_two_dask_worker_processes_with_sequential_results(
    tiny_model_dir: Path, tmp_path: Path, sequential_reference: tuple[dict, str]
) -> None:
    """A local cluster the runner starts for the sweep (`--workers 2`): each trial in its own worker."""
    cmd = _sweep_cmd(tiny_model_dir, tmp_path / "arts", "--runner", "dask", "--workers", "2")
    env = _env(tmp_path)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=900)
    summary = _summary(proc, out)
    assert set(summary["trial_states"].values()) == {"Completed"}, summary
    pids = {w["pid"] for w in summary["trial_workers"].values()}
    addresses = {w["worker"] for w in summary["trial_workers"].values()}
    assert len(pids) == 2 and proc.pid not in pids and len(addresses) == 2, summary  # two worker processes
    assert _numbers(summary) == sequential_reference
    assert len(list((tmp_path / "arts" / "ablations" / "trials").iterdir())) == 2  # results in the registry


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_retried_to_the_same_result(
    tiny_model_dir: Path, tmp_path: Path, sequential_reference: tuple[dict, str]
) -> None:
    """An existing cluster (`--address`): SIGKILL a worker while its trial is between checkpoints."""
    from distributed import Client, LocalCluster

    env = _env(tmp_path)
    worker_env = {k: env[k] for k in ("BELLM_HOME", "PREFECT_HOME", "PYTHONPATH")}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, env=worker_env
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=300)
        before = client.run(os.getpid)  # worker address -> pid
        cmd = _sweep_cmd(tiny_model_dir, tmp_path / "arts", "--runner", "dask", "--address", cluster.scheduler_address)
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed = None
        train_root = tmp_path / "home" / "train"
        deadline = time.time() + 900
        while killed is None and proc.poll() is None and time.time() < deadline:
            runs = list(train_root.iterdir()) if train_root.is_dir() else []
            mid = [d for d in runs if any((d / "checkpoints").glob("step-*")) and not (d / "adapter").exists()]
            busy = [w for w, keys in client.processing().items() if keys]
            # Both trials trained a step and neither finished, or the one worker still busy is training the one trial
            # that has a checkpoint (on a loaded machine the trials need not overlap): kill a worker mid-trial.
            if mid and busy and (len(mid) == 2 or len(busy) == 1):
                killed = before[busy[0]]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        out, _ = proc.communicate(timeout=900)
    assert killed is not None, "never saw both trials mid-training:\n" + out[-4000:]
    summary = _summary(proc, out)
    assert killed not in {w["pid"] for w in summary["trial_workers"].values()}, summary  # retried elsewhere
    assert _numbers(summary) == sequential_reference
    trials = json.loads((Path(summary["dir"]) / "ablation.json").read_text())["trials"]
    assert any(t["trained_train"]["resumed_from"] for t in trials.values()), trials  # it resumed mid-trial
