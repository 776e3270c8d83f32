"""The `train-eval-export` flow: what users run (as deployments, or `bellm run`).

data prep → LoRA training → STS gates and the regression check against the champion (on the dev splits of
`eval.gate_suite`) → ONNX export (parity, invariance and variant gates, the last on the same dev splits) → full
STS report through the exported fp32 model (test splits: reported, never deciding; + zero-shot on the fastest
faithful engine, baseline; cached by fingerprint) → register the run, and promote it to champion when every gate
passed (a failed run keeps no ONNX directory). The manifest's `decisions` lists every file a decision read.
The flow only orchestrates; every step is a task in `tasks/` over a `bellm` function.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from bellm.config import preflight
from bellm.paths import portable_path
from bellm.precision import fastest_faithful_engine
from bellm.profiles import build_config
from bellm_app.tasks.data import prepare_data
from bellm_app.tasks.evaluate import enforce_gates_task, evaluate_suite
from bellm_app.tasks.export import export_variants, export_zero_shot
from bellm_app.tasks.registry import copy_adapter, finish_run, open_run, publish_report, read_champion, record
from bellm_app.tasks.train import resolve_model, train_adapter


class _Timer:
    """Per-step wall times (recorded in the manifest) and the sum of task bodies (for overhead)."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    def __call__(self, name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        self.steps[name] = round(self.steps.get(name, 0.0) + time.perf_counter() - t, 3)
        return out


def decision_record(suite: Any, data_sha256: dict[str, str]) -> dict[str, Any]:
    """What a decision read, for the manifest's `decisions`: the suite (or file) and {file: sha256} of every file
    it read, so anyone can check that no test split is among them."""
    return {"suite": suite, "data_sha256": dict(data_sha256)}


@flow(name="train-eval-export", log_prints=True)
def train_eval_export(profile: str = "quick", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a BeLLM encoder, gate it on STS, report, export ONNX, register (and maybe promote) the run.

    `profile`: a name in `bellm.profiles.PROFILES` (quick, standard, paper, smoke). `overrides`: dotted keys or
    nested sections of the run config, e.g. {"train.max_steps": 50, "encoder.pooling": "mean"}.
    """
    log = get_run_logger()
    cfg = preflight(build_config(profile, overrides or {}))  # validated once, before anything runs
    timer = _Timer()
    t0 = time.perf_counter()
    run_dir = open_run(cfg)
    log.info("run directory: %s", run_dir)
    try:
        data = timer("prepare-data", prepare_data, cfg)
        base = timer("resolve-model", resolve_model, cfg.model.source)
        record(run_dir, data=data["sha256"], base_model=base)
        trained = timer("train", train_adapter, cfg, data["sha256"], base["sha256"])
        adapter = copy_adapter(trained["adapter_dir"], run_dir)
        record(run_dir, training={k: v for k, v in trained.items() if k != "adapter_dir"})

        # The content-keyed training output (not the run's copy); the eval cache is keyed by its content hash.
        encoder, trained_adapter = cfg.encoder_config, trained["adapter_dir"]
        model_key = trained["adapter_sha256"]
        max_pairs = cfg.data.max_eval_pairs
        gate = timer(
            "evaluate-gate", evaluate_suite, encoder, cfg.eval.gate_suite, max_pairs, cfg.eval.batch_size, model_key,
            trained_adapter, cfg.eval.dtype,
        )
        # Every decision reads the dev splits of eval.gate_suite (issue 26): the minimums and the regression check
        # against the champion's dev numbers, here, before anything is exported; test splits are only reported.
        decisions = {"gates": decision_record(gate["suite"], gate["data_sha256"])}
        if cfg.train.eval_every and cfg.train.select_best:  # the in-training dev curve chose the kept step
            dev = portable_path(cfg.data.dev_pairs)
            decisions["checkpoint_selection"] = decision_record(dev, {dev: data["sha256"][dev]})
        record(run_dir, decisions=decisions)
        champion = read_champion(cfg)
        verdict = timer("gates", enforce_gates_task, gate, cfg.eval.gates.model_dump(), champion)
        record(run_dir, gates=verdict)

        # Export right after the gate, so the report describes the files that ship: the full suite runs through
        # the torch-free runtime on the exported fp32 model (parity- and invariance-gated to PyTorch).
        exported = timer("export", export_variants, cfg, adapter, run_dir, max_pairs)
        record(run_dir, published_variants=exported["published"], export=exported["report"],
               decisions={"export_variant_gate": decision_record(cfg.eval.gate_suite, exported["decision_data"])})
        shipped = Path(run_dir) / "onnx" / "fp32"  # evaluated through `bellm.runtime.OnnxEncoder` (CPU)
        full = timer(
            "evaluate-full", evaluate_suite, shipped, cfg.eval.report_suite, max_pairs, cfg.eval.batch_size,
            f"{model_key}:onnx-fp32:{cfg.export.opset}:{cfg.export.attention_op}",
        )
        if fastest_faithful_engine() == "onnx":  # CPU without native bf16: ORT fp32 (BENCHMARKS.md, issue 12)
            zs_onnx = Path(timer("export-zero-shot", export_zero_shot, cfg, base["sha256"]))
            zero = timer(
                "evaluate-zero-shot", evaluate_suite, zs_onnx, cfg.eval.report_suite, max_pairs, cfg.eval.batch_size,
                f"{base['sha256']}:zero-shot:{zs_onnx.parent.name}",
            )
        else:  # bf16 native (CUDA, or a CPU with AVX-512 BF16 / AMX): PyTorch
            zero = timer(
                "evaluate-zero-shot", evaluate_suite, encoder, cfg.eval.report_suite, max_pairs, cfg.eval.batch_size,
                base["sha256"], None, cfg.eval.dtype,
            )
        baseline = None
        if cfg.eval.baseline:
            baseline = timer(
                "evaluate-baseline",
                evaluate_suite,
                "minilm",
                cfg.eval.report_suite,
                max_pairs,
                cfg.eval.batch_size,
                "minilm",
            )
        metrics: dict[str, Any] = {"trained": full, "gate": gate, "zero_shot": zero, "baseline": baseline,
                                   "onnx": exported["results"]}
        timer("report", publish_report, run_dir, shipped, None, metrics, champion, max_pairs)

        total = time.perf_counter() - t0
        record(run_dir, timings={**timer.steps, "total": round(total, 3)})
        promoted = finish_run(run_dir, cfg, "passed")
        log.info("run %s passed%s", run_dir, " and is the new champion" if promoted else "")
        return {
            "run_dir": run_dir,
            "status": "passed",
            "promoted": promoted,
            "metrics": metrics,
            "timings": timer.steps,
        }
    except BaseException as e:
        record(run_dir, timings={**timer.steps, "total": round(time.perf_counter() - t0, 3)})
        finish_run(run_dir, cfg, "failed", error="".join(traceback.format_exception_only(type(e), e)).strip())
        raise
