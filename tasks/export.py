"""The export task: ONNX variants of the trained encoder, parity- and STS-gated (on the decision set: dev
splits), published atomically into the run directory; each published variant is then evaluated (reported
only, STS-B test) through the torch-free runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from bellm.config import RunConfig


def _score_cached(suite: str | list[str], max_pairs: int | None, batch_size: int, read: dict[str, str]):  # noqa: ANN202
    """The variant gate's score: the average Spearman on the decision set `suite` (dev splits), caching embeddings
    so it costs nothing twice; the files it read go into `read` ({file: sha256}, for the manifest)."""

    def score(encoder: Any) -> float:
        from bellm.evaluation import evaluate

        result = evaluate(encoder, suite, max_pairs=max_pairs, batch_size=batch_size)
        read.update(result["data_sha256"])
        if result["avg"] is None:
            raise ValueError(f"the Spearman on {suite} is undefined (constant predictions?)")
        return float(result["avg"])

    return score


@task(name="export-zero-shot", retries=0)
def export_zero_shot(cfg: RunConfig, base_sha256: str) -> str:
    """The untrained encoder as an fp32 ONNX model (graph check, parity and invariance gated; no STS gate),
    so the zero-shot column runs on the fastest faithful CPU engine. Kept under BELLM_HOME by content (the
    encoder settings, the base model's hash, opset, attention op, code): built once, then reused."""
    from bellm.contract import DESCRIPTOR_FILE
    from bellm.encoder import load_encoder
    from bellm.export import export_encoder
    from bellm.keys import zero_shot_key
    from bellm.locks import file_lock
    from bellm.paths import cache_dir

    out = cache_dir("zero_shot_onnx") / zero_shot_key(cfg, base_sha256)
    # One builder at a time (two flows may start together); export_encoder publishes atomically.
    with file_lock(out.with_suffix(".lock"), timeout=None, what="zero-shot export"):
        if not (out / "fp32" / DESCRIPTOR_FILE).is_file():
            export_encoder(load_encoder(cfg.encoder_config), out, variants=["fp32"], sts_gate=False, overwrite=True,
                           attention_op=cfg.export.attention_op, opset=cfg.export.opset)
    return str(out / "fp32")


@task(name="export", retries=0)
def export_variants(cfg: RunConfig, adapter_dir: str, run_dir: str, max_pairs: int | None) -> dict[str, Any]:
    """Export to `<run_dir>/onnx/<variant>/`. fp32 must pass the graph check and parity gate or nothing is
    published (raises); other variants are published only if their own gates pass (recorded otherwise)."""
    from bellm.evaluation import evaluate
    from bellm.export import export_encoder
    from bellm.export.card import run_card_info
    from bellm.runtime import OnnxEncoder, usable_cpus
    from bellm.training import load_trained_encoder

    encoder = load_trained_encoder(adapter_dir)
    out = Path(run_dir) / "onnx"
    read: dict[str, str] = {}  # what the variant gate read (the decision set: dev splits)
    exp = export_encoder(
        encoder,
        out,
        variants=cfg.export.variants,
        attention_op=cfg.export.attention_op,
        opset=cfg.export.opset,
        sts_gate=_score_cached(cfg.eval.gate_suite, max_pairs, cfg.eval.batch_size, read),
        max_spearman_drop=cfg.export.max_spearman_drop,
        card_info=run_card_info(adapter_dir, run_dir),  # metrics.json holds the trained results by now
    )
    results = {
        name: evaluate(
            OnnxEncoder(str(out / name), providers=["CPUExecutionProvider"], threads=usable_cpus()),
            "stsb",
            max_pairs=max_pairs,
            batch_size=cfg.eval.batch_size,
        )
        for name in exp.published()
    }
    report = {
        n: {
            "published": v.published,
            "reason": v.reason,
            "seconds": round(v.seconds, 2),
            "bytes": v.bytes,
            "parity": v.parity,
            "sts": v.sts,
        }
        for n, v in exp.variants.items()
    }
    return {"published": exp.published(), "results": results, "report": report, "seconds": round(exp.seconds, 2),
            "decision_data": read}
