"""A 4-trial ablation sweep run sequentially and on a local 2-worker Dask cluster: wall time and CPU use.

Each mode runs `bellm ablate` as a subprocess in a fresh BELLM_HOME and registry (nothing cached between
modes; the converted base model is shared), trained trials only (k = 0,1,2,4, mean pooling). Reported per
mode: wall seconds of the whole command (Prefect's ephemeral server and, for Dask, the cluster start
included), CPU seconds of the whole process tree (user+sys of every process it started, workers included),
CPU utilisation = CPU seconds / (wall × usable cores), the summed per-trial training seconds, and whether
both modes produced identical numbers (they must). The load average before and after says whether the
machine was quiet: numbers from a loaded machine are not speed numbers.

On a 2-core machine the gain is bounded by the cores: two workers with one torch thread each do at best the
work of one process with two threads, so the speed-up can only come from the serial parts of a trial
(tokenisation, evaluation, Python overhead) overlapping, minus the cluster's start-up.

    .venv/bin/python bench/sweep_scale.py                 # embedded SmolLM2-135M, 20 steps/trial
    .venv/bin/python bench/sweep_scale.py --tiny --steps 2  # a correctness run on a tiny random model (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bellm.paths import bellm_home  # noqa: E402
from bellm_app.flows.runners import usable_cores  # noqa: E402


def sweep_cmd(model: str, arts: Path, args: argparse.Namespace, runner: list[str]) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "bellm"), "ablate", "--ks", args.ks, "--poolings", "mean"]
    cmd += ["--steps", str(args.steps), "--table-suite", args.table_suite, "--no-zero-shot", "--bootstrap", "100"]
    if args.max_eval_pairs:
        cmd += ["--max-eval-pairs", str(args.max_eval_pairs)]
    for s in [f"model.source={model}", f"artifacts_dir={arts}", "train.warmup_steps=0", *args.overrides]:
        cmd += ["--set", s]
    return cmd + runner


def run_mode(name: str, model: str, runner: list[str], args: argparse.Namespace, tmp: Path) -> dict:
    """One sweep in a fresh home and registry; CPU time of the whole process tree from RUSAGE_CHILDREN."""
    root = tmp / name
    home = root / "home"
    (home / "cache").mkdir(parents=True)
    shared_models = bellm_home() / "cache" / "models"  # the converted base model: shared, not re-converted
    if shared_models.is_dir():
        (home / "cache" / "models").symlink_to(shared_models)
    env = {**os.environ, "BELLM_HOME": str(home), "PREFECT_HOME": str(root / "prefect")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("PREFECT_API_URL", None)
    cmd = sweep_cmd(model, root / "arts", args, runner)
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    out = Path(summary["dir"])
    trials = json.loads((out / "ablation.json").read_text())["trials"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cores = usable_cores()
    return {
        "mode": name,
        "command": " ".join(cmd),
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cpu_utilisation": round(cpu / (wall * cores), 3),
        "train_s_sum": round(sum(t["trained_train"]["seconds"] for t in trials.values()), 1),
        "workers": sorted({(w or {}).get("pid", 0) for w in summary["trial_workers"].values()}),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": os.getloadavg()[0],
        "csv": (out / "ablation_trained.csv").read_text(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="model source (default: the embedded model)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model with the real tokenizer (checks only)")
    ap.add_argument("--ks", default="0,1,2,4", help="the 4 trials (k values, mean pooling)")
    ap.add_argument("--steps", type=int, default=20, help="training steps per trial")
    ap.add_argument("--table-suite", default="stsb", help="evaluation suite per trial")
    ap.add_argument("--max-eval-pairs", type=int, default=500, help="pairs per evaluated task")
    ap.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides k=v")
    ap.add_argument("--out", default=None, help="JSON result (default results/sweep_scale.json; none with --tiny)")
    args = ap.parse_args()

    from bellm.io import write_json_atomic

    with tempfile.TemporaryDirectory(prefix="bellm-sweep-bench-") as t:
        tmp = Path(t)
        model = args.model
        if args.tiny:
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import make_tiny_model

            from bellm.models import resolve_source

            model = str(make_tiny_model(tmp / "tiny", Path(resolve_source("smollm2-135m").path)))
            args.overrides += ["data.max_train_pairs=64", "data.max_train_triplets=64", "train.batch_size=4",
                               "lora.layers=null"]
        seq = run_mode("sequential", model, [], args, tmp)
        dask = run_mode("dask", model, ["--runner", "dask", "--workers", str(args.workers)], args, tmp)
    identical = seq.pop("csv") == dask.pop("csv")
    result = {
        "model": "tiny-random" if args.tiny else args.model,
        "trials": len(args.ks.split(",")),
        "steps": args.steps,
        "usable_cores": usable_cores(),
        "identical_results": identical,
        "speedup": round(seq["wall_s"] / dask["wall_s"], 2),
        "modes": [seq, dask],
    }
    out = args.out or (None if args.tiny else str(REPO / "bench" / "results" / "sweep_scale.json"))
    if out:
        write_json_atomic(Path(out), result)
    print("| mode | wall s | CPU s | CPU utilisation | Σ trial train s | worker pids |")
    print("|---|---|---|---|---|---|")
    for m in (seq, dask):
        print(f"| {m['mode']} | {m['wall_s']} | {m['cpu_s']} | {m['cpu_utilisation']:.0%} | {m['train_s_sum']} "
              f"| {len(m['workers'])} |")
    print(f"speed-up {result['speedup']}x on {result['usable_cores']} cores; identical results: {identical}; "
          f"load {seq['loadavg_1m_before']:.1f} → {dask['loadavg_1m_after']:.1f}")
    if not identical:
        raise SystemExit("the Dask sweep's numbers differ from the sequential sweep's")


if __name__ == "__main__":
    main()
