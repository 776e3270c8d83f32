"""Test-split numbers for finished recipes (sweep trials), reported once after selection on dev.

    .venv/bin/python bench/recipe_test.py --spec sweeps/quick_dims2.json --trials lr1e3-480 --suite full
    .venv/bin/python bench/recipe_test.py --trial-dir $BELLM_HOME/sweeps/lr1e3-480-<key> --suite full --engine onnx

A trial is found exactly: by the key its spec gives it under this code (`bellm.sweep.trial_dir`), or by an
explicit trial directory (a trial trained by another checkout or code version). Its selected adapter is
evaluated on the suite in PyTorch fp32, or (`--engine onnx`) through its exported fp32 ONNX model, the way the
main job reports a run (ORT fp32 encodes 1.6x as fast as PyTorch fp32 on the AVX2 machine: BENCHMARKS.md, the
engines table); writes bench/results/recipe_test_<trial>_<suite>.json. Embeddings are cached by model
fingerprint, so a later run with more tasks only encodes the new sentences.

(Until 2026-11-30 the trial was found by name with a glob and the alphabetically last match was taken: with
two versions of a trial on disk, that could score the older one.)
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from bellm.evaluation import evaluate
from bellm.io import write_json_atomic
from bellm.sts import unseen_average
from bellm.sweep import SweepSpec, trial_dir, trials_root
from bellm.training import load_trained_encoder

RESULTS = Path(__file__).resolve().parent / "results"


def trial_dirs(args: argparse.Namespace) -> list[Path]:
    if args.trial_dir:
        return [Path(d) for d in args.trial_dir]
    if not (args.spec and args.trials):
        raise SystemExit("give --spec SPEC --trials NAMES, or --trial-dir DIR")
    spec = SweepSpec.load(Path(args.spec))
    return [trial_dir(trials_root(), spec, n) for n in args.trials.split(",")]


def encoder(adapter: Path, engine: str, tmp: Path) -> Any:
    enc = load_trained_encoder(adapter)
    if engine == "torch":
        return enc
    from bellm.export.api import export_encoder
    from bellm.runtime import OnnxEncoder

    export_encoder(enc, tmp / "export", ["fp32"], sts_gate=False)
    return OnnxEncoder(tmp / "export" / "fp32")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", help="the sweep spec the trials belong to")
    ap.add_argument("--trials", help="comma-separated trial names of --spec")
    ap.add_argument("--trial-dir", action="append", help="a trial directory (repeatable), instead of --spec")
    ap.add_argument("--suite", default="full", help="full, or comma-separated task keys (stsb,sickr,sts12,...)")
    ap.add_argument("--engine", choices=("torch", "onnx"), default="torch",
                    help="torch: PyTorch fp32; onnx: export fp32 (parity-gated) to a temporary directory and run it")
    args = ap.parse_args()
    suite: str | list[str] = args.suite if args.suite in ("full", "gate") else args.suite.split(",")
    for d in trial_dirs(args):
        if not (d / "result.json").is_file():
            raise SystemExit(f"{d}: no finished trial there (run its sweep first)")
        done = json.loads((d / "result.json").read_text())
        name, adapter = done["name"], Path(done.get("adapter") or d / "adapter")  # trials before 2026-12 held theirs
        with tempfile.TemporaryDirectory() as tmp:
            res = evaluate(encoder(adapter, args.engine, Path(tmp)), suite)
        row = {t: round(b["spearman"], 2) for t, b in res["tasks"].items()}
        # The 7-task avg, and beside the in-domain STS-B / SICK-R the STS12-16 avg (unseen domains; None
        # unless the suite has all five).
        out = {"trial": name, "adapter": str(adapter), "engine": args.engine, "suite": res["suite"],
               "spearman": row, "avg": res["avg"], "unseen_avg": unseen_average(res["tasks"]),
               "seconds": res["seconds"]}
        write_json_atomic(RESULTS / f"recipe_test_{name}_{args.suite.replace(',', '-')}.json", out)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
