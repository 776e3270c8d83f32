"""Where an exported model's forward spends its time: onnxruntime's own profiler, kernel time summed by op type.

Runs STS-B sentences in length-sorted batches through one ORT CPU session with profiling on and prints each op
type's share of the kernel time (shares within one profile are meaningful on a loaded machine; absolute times
only on a quiet one). Used for the int8 breakdown in BENCHMARKS.md ("Where the int8 forward's time goes").

    .venv/bin/python bench/ort_profile.py artifacts/runs/<id>/onnx/int8 --threads 1
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sts_sentences  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("export", type=Path, help="an export variant directory (model.onnx, tokenizer.json, bellm.json)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()

    import onnxruntime as ort

    from bellm.runtime import OnnxEncoder
    from bellm.tokenize import batches_by_length, pad_batch

    enc = OnnxEncoder(args.export, ["CPUExecutionProvider"], verify_model=False)  # its tokenizer and contract
    encs = enc.tokenize(sts_sentences(args.sentences))
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = args.threads
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="bellm-ortprof-"), "profile")
    sess = ort.InferenceSession(str(args.export / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    for idx in batches_by_length(encs, args.batch):
        feeds = dict(zip(("input_ids", "attention_mask", "span_mask"), pad_batch([encs[i] for i in idx]), strict=True))
        sess.run(None, {k: v for k, v in feeds.items() if k in names})
    events = json.loads(Path(sess.end_profiling()).read_text())

    micros: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            micros[e["args"]["op_name"]] += e["dur"]
            calls[e["args"]["op_name"]] += 1
    total = sum(micros.values())
    print(f"{args.export}: {len(encs)} sentences, batch {args.batch}, {args.threads} thread(s)")
    for op, us in micros.most_common(args.top):
        print(f"{op:28s} {us / 1e3:9.1f} ms {100 * us / total:5.1f}%  calls={calls[op]}")
    print(f"{'total kernel time':28s} {total / 1e3:9.1f} ms")


if __name__ == "__main__":
    main()
