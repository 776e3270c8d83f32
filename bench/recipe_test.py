"""Test-split numbers for finished recipes (sweep trials), reported once after selection on dev.

    .venv/bin/python bench/recipe_test.py --trials keep28-sick-240 --suite stsb,sickr

Reads each trial's selected adapter from $BELLM_HOME/sweeps/<trial>-<key>/adapter and evaluates it on the
given suite (PyTorch fp32); writes bench/results/recipe_test_<trial>.json. Embeddings are cached by model
fingerprint, so a later run with more tasks only encodes the new sentences.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bellm.evaluation import evaluate
from bellm.io import write_json_atomic
from bellm.paths import bellm_home
from bellm.training import load_trained_encoder

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", required=True, help="comma-separated sweep trial names")
    ap.add_argument("--suite", default="full", help="full, or comma-separated task keys (stsb,sickr,sts12,...)")
    args = ap.parse_args()
    suite: str | list[str] = args.suite if args.suite in ("full", "gate") else args.suite.split(",")
    for name in args.trials.split(","):
        dirs = sorted((bellm_home() / "sweeps").glob(f"{name}-*/adapter"))
        if not dirs:
            raise SystemExit(f"no finished trial {name!r} under {bellm_home() / 'sweeps'}")
        enc = load_trained_encoder(dirs[-1])
        res = evaluate(enc, suite)
        row = {t: round(b["spearman"], 2) for t, b in res["tasks"].items()}
        out = {"trial": name, "adapter": str(dirs[-1]), "suite": res["suite"], "spearman": row,
               "avg": res["avg"], "seconds": res["seconds"]}
        write_json_atomic(RESULTS / f"recipe_test_{name}_{args.suite.replace(',', '-')}.json", out)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
