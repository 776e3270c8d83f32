"""`python -m bellm.training --config RUN.json --output DIR`: the worker entry torchrun starts.

`bellm train` writes the resolved configuration to DIR/launch_config.json and starts this module
under `torchrun --nproc_per_node=N` when `train.nproc_per_node > 1`; it can also be run by hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from bellm.config import RunConfig
from bellm.training.loop import train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bellm.training")
    ap.add_argument("--config", required=True, type=Path, help="a full RunConfig as JSON")
    ap.add_argument("--output", required=True, type=Path, help="run directory (resumes from its checkpoints)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = RunConfig.model_validate_json(args.config.read_text())
    result = train(cfg, args.output)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"adapter: {result.adapter_dir}  steps: {result.steps}  final loss: {result.final_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
