"""Registry tasks: open a run, record manifest fields, publish the report, finish (and promote)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from bellm.config import EncoderConfig, RunConfig
from bellm.liveness import Heartbeat
from bellm.registry import RegistryError, Run, champion_result, new_run, promote, setting_of, update_manifest
from bellm_app.tasks.common import retrying_task


def _run(run_dir: str) -> Run:
    p = Path(run_dir)
    return Run(p.name, p)


@retrying_task("open-run")
def open_run(cfg: RunConfig) -> str:
    """A new `running` run directory in the registry, with a heartbeat while this process lives."""
    run_dir = new_run(cfg.artifacts_dir, cfg.profile, cfg.model_dump(mode="json")).dir
    Heartbeat.start(run_dir)
    return str(run_dir)


@retrying_task("record")
def record(run_dir: str, **fields: Any) -> None:
    update_manifest(_run(run_dir), **fields)


@task(name="champion")
def read_champion(cfg: RunConfig) -> dict[str, Any] | None:
    """The result of the champion of this run's setting (profile + model + suite); smoke runs never compare
    against a champion. An unreadable champion raises (never retried): it must not disable the gate."""
    if cfg.profile == "smoke":
        return None
    return champion_result(cfg.artifacts_dir, setting_of(cfg.model_dump(mode="json")))


@task(name="copy-adapter")
def copy_adapter(adapter_dir: str, run_dir: str) -> str:
    """Copy the (possibly cached) trained adapter into this run's directory."""
    dest = Path(run_dir) / "adapter"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(adapter_dir, dest)
    log = Path(adapter_dir).parent / "train_log.jsonl"  # the loss/dev curve, plotted in the report
    if log.is_file():
        shutil.copy(log, Path(run_dir) / "train_log.jsonl")
    return str(dest)


@task(name="publish-report")
def publish_report(
    run_dir: str,
    encoder: EncoderConfig | Path,
    adapter: str | None,
    metrics: dict[str, Any],
    champion: dict[str, Any] | None,
    max_pairs: int | None = None,
) -> dict[str, str]:
    """metrics.json + report.md + PNGs in the run dir, and the same table/report as Prefect artifacts.

    The STS-B scatter needs per-pair cosines: they are recomputed from the on-disk embedding cache
    (no new encoding), so the cached evaluation results stay small.
    """
    from bellm.evaluation import evaluate_with_scores
    from bellm.report import comparison_rows, report_markdown, write_report
    from bellm.trial import load_for_eval

    _, scores = evaluate_with_scores(load_for_eval(encoder, adapter), ["stsb"], max_pairs=max_pairs)
    core = ("trained", "zero_shot", "baseline")
    extra = {k: v for k, v in metrics.items() if k not in core and v is not None}
    paths = write_report(
        Path(run_dir),
        metrics["trained"],
        zero_shot=metrics.get("zero_shot"),
        champion=champion,
        baseline=metrics.get("baseline"),
        extra=extra,
        scores=scores,
    )
    rows = comparison_rows(metrics["trained"], metrics.get("zero_shot"), champion, metrics.get("baseline"))
    run_id = Path(run_dir).name
    create_table_artifact(rows, key="bellm-sts", description=f"STS Spearman x100, run {run_id}")
    create_markdown_artifact(
        report_markdown(metrics["trained"], metrics.get("zero_shot"), champion, metrics.get("baseline"),
                        decision=metrics.get("gate")),
        key="bellm-report",
        description=f"bellm report, run {run_id}",
    )
    return {k: str(v) for k, v in paths.items()}


@task(name="finish-run")
def finish_run(run_dir: str, cfg: RunConfig, status: str, error: str | None = None) -> bool:
    """Mark the run passed/failed; try to promote a passed non-smoke run to champion. Returns promoted.

    Promotion re-checks the gates against the champion under the registry lock (another flow may have
    been promoted meanwhile); a refusal keeps the run `passed` and records why in `promotion`."""
    run = _run(run_dir)
    onnx_dir = Path(run_dir) / "onnx"
    try:
        if status == "failed" and onnx_dir.exists():  # a failed run never keeps a published model
            shutil.rmtree(onnx_dir)
        update_manifest(run, status=status, **({"error": error} if error else {}))
    finally:
        Heartbeat.stop(run_dir)
    if status == "passed" and onnx_dir.is_dir():
        create_link_artifact(onnx_dir.resolve().as_uri(), link_text=f"ONNX models of {run.id}", key="bellm-onnx")
    if status == "passed" and cfg.profile != "smoke":
        try:
            promote(run.id, cfg.artifacts_dir)
        except RegistryError as e:
            update_manifest(run, promotion={"refused": str(e)})
            get_run_logger().warning("run %s passed but is not champion: %s", run.id, e)
            return False
        return True
    return False
