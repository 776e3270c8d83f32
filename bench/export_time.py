"""What tracing the real embedded model costs with bellm's optimizer and with torch's default (`optimize=True`).

`bellm.export.optimize` drops onnxscript's `SlicesSplit` rule, whose matcher is quadratic in graph size. This
times `bellm.export.api.build_graph` (trace + optimizer + causality rewrite) both ways on the same encoder,
ours first, and checks that the two graphs are node for node the same. Quiet machine only.

    .venv/bin/python bench/export_time.py [--source smollm2-135m] [--k 2] [--out bench/results/export_time.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxscript._framework_apis.torch_2_11 as exporter_apis  # noqa: E402
import torch  # noqa: E402

import bellm.export.trace as trace_module  # noqa: E402
from bellm.encoder import load_encoder  # noqa: E402
from bellm.export.api import build_graph  # noqa: E402
from bellm.export.optimize import graph_signature  # noqa: E402
from bench.common import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="smollm2-135m")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_time.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    enc = load_encoder(args.source, bidirectional_layers=args.k)
    times, graphs = {}, {}
    for name in ("bellm", "torch_default"):
        if name == "torch_default":
            trace_module.optimize_graph = exporter_apis.optimize
        t = time.perf_counter()
        graphs[name] = build_graph(enc, torch.float32, "onnx", 23)
        times[name] = round(time.perf_counter() - t, 1)
        print(name, times[name], "s", flush=True)
    same = graph_signature(graphs["bellm"]) == graph_signature(graphs["torch_default"])
    out = {"source": args.source, "k": args.k, "layers": len(enc.module.backbone.flags), "build_graph_s": times,
           "nodes": len(list(graphs["bellm"].graph)), "same_graph": same, "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
