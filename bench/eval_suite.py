"""STS evaluation of the embedded model, zero-shot: time, dedupe ratio and Spearman per config.

Configs are k (last k layers bidirectional) x pooling; the default grid is k in {0, 2, 4} x {last, mean}.
Results accumulate per suite in bench/results/eval_suite_<suite>[_mp<N>].{json,md} (a rerun of a config
replaces its row), so configs can be run one at a time on a busy machine.

    .venv/bin/python bench/eval_suite.py --suite full --configs 2:last           # one config, full suite
    .venv/bin/python bench/eval_suite.py --suite gate                            # 6 configs, STS-B dev
    .venv/bin/python bench/eval_suite.py --suite full --max-pairs 100 --configs 0:last 2:mean
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from bellm.contract import POOLINGS  # noqa: E402
from bellm.models import DEFAULT_MODEL  # noqa: E402
from bellm.prompts import DEFAULT_PROMPT  # noqa: E402

DEFAULT_CONFIGS = ["0:last", "0:mean", "2:last", "2:mean", "4:last", "4:mean"]


def parse_config(spec: str) -> tuple[int, str]:
    k, _, pooling = spec.partition(":")
    if not k.isdigit() or pooling not in POOLINGS:
        raise SystemExit(f"bad config {spec!r}: use K:POOLING, e.g. 2:last or 4:mean")
    return int(k), pooling


def fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def markdown(doc: dict) -> str:
    rows = sorted(doc["rows"], key=lambda r: (r["k"], r["pooling"]))
    tasks = list(rows[0]["tasks"]) if rows else []
    head = ["k", "pooling", *tasks, "avg", "wmean", "seconds", "sent/s", "unique/total", "load 1m"]
    out = [f"Zero-shot {doc['model']} on suite `{doc['suite']}`"
           + (f" (first {doc['max_pairs']} pairs per task)" if doc["max_pairs"] else "")
           + f", {doc['threads']} torch threads, prompt `{doc['prompt']}`, cold cache.", "",
           "| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        d = r["dedupe"]
        cells = [str(r["k"]), r["pooling"], *[fmt(r["tasks"][t]) for t in tasks], fmt(r["avg"]), fmt(r["wmean"]),
                 f"{r['seconds']:.0f}", f"{d['encoded'] / r['encode_seconds']:.1f}" if r["encode_seconds"] else "–",
                 f"{d['unique']}/{d['sentences']} ({d['unique'] / d['sentences']:.1%})", f"{r['load_before']:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="full", help="gate | full | task keys (comma-separated)")
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="K:POOLING ...")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", action="store_true", help="reuse cached embeddings (default: cold, honest timing)")
    ap.add_argument("--out-dir", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()

    import torch

    import bellm
    from bellm.evaluation import evaluate
    from bellm.io import write_json_atomic, write_text_atomic

    torch.set_num_threads(args.threads)
    suite = args.suite.split(",") if "," in args.suite else args.suite
    name = f"eval_suite_{args.suite.replace(',', '+')}" + (f"_mp{args.max_pairs}" if args.max_pairs else "")
    json_path = Path(args.out_dir) / f"{name}.json"
    doc = json.loads(json_path.read_text()) if json_path.is_file() else {"rows": []}
    doc.update(model=args.model, suite=args.suite, max_pairs=args.max_pairs, threads=args.threads,
               prompt=args.prompt, batch_size=args.batch_size)
    for spec in args.configs:
        k, pooling = parse_config(spec)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        enc = bellm.load_encoder(args.model, bidirectional_layers=k, pooling=pooling, prompt=args.prompt)
        load_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        res = evaluate(enc, suite, max_pairs=args.max_pairs, batch_size=args.batch_size, cache=args.cache)
        seconds = time.perf_counter() - t1
        row = {"k": k, "pooling": pooling, "fingerprint": res["model"],
               "tasks": {t: b["spearman"] for t, b in res["tasks"].items()}, "avg": res["avg"],
               "wmean": res["wmean"], "dedupe": res["dedupe"], "seconds": round(seconds, 1),
               "encode_seconds": round(seconds, 1) if res["dedupe"]["encoded"] else None,
               "model_load_seconds": round(load_s, 1), "load_before": load_before,
               "load_after": os.getloadavg()[0], "machine": machine(),
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        doc["rows"] = [r for r in doc["rows"] if (r["k"], r["pooling"]) != (k, pooling)] + [row]
        print(json.dumps({k2: row[k2] for k2 in ("k", "pooling", "tasks", "avg", "seconds", "dedupe")}), flush=True)
        write_json_atomic(json_path, doc)
        write_text_atomic(json_path.with_suffix(".md"), markdown(doc))
    print(f"wrote {json_path} and {json_path.with_suffix('.md')}")


if __name__ == "__main__":
    main()
