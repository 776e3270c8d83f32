"""`bellm export`: an encoder (zero-shot or with a trained adapter) → a checked, gated ONNX export directory."""

from __future__ import annotations

from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import suite_tasks, user_errors
from bellm.cli.options import EncoderChoice, encoder_options
from bellm.config import ExportConfig
from bellm.errors import InputError

_X = ExportConfig()  # the defaults are written there, once


def parse_variants(text: str) -> list[str]:
    items = [v.strip() for v in text.split(",") if v.strip()]
    if not items:
        raise InputError("--variants is empty; give e.g. fp32,int8")
    return items


@app.command("export")
@encoder_options
def export(
    output: Path = typer.Option(
        ..., "--output", "-o", help="export directory (replaced atomically when all gates pass; a non-empty "
        "directory that is not a previous bellm export is refused unless --overwrite)"
    ),
    encoder: EncoderChoice = None,  # type: ignore[assignment] - filled by @encoder_options
    variants: str = typer.Option(",".join(_X.variants), help="comma-separated: fp32 (always built), fp16 (CUDA), "
                                 "int8 (CPU)"),
    attention_op: str = typer.Option(
        _X.attention_op, help="onnx (ONNX Attention) | ms_mha (com.microsoft.MultiHeadAttention, CUDA-friendly)"
    ),
    opset: int = typer.Option(_X.opset,
                              help=ExportConfig.model_fields["opset"].description),
    sts_gate: bool = typer.Option(
        True, help=f"publish a variant only if its STS Spearman on the dev splits ({suite_tasks('dev')}) is "
        "within --max-drop of fp32"
    ),
    sts_max_pairs: int | None = typer.Option(
        None, help="score the STS gate on N pairs of each dev task, evenly spaced (smoke runs)"
    ),
    max_drop: float = typer.Option(_X.max_spearman_drop, help="max STS Spearman points (dev) a variant may lose "
                                   "against fp32"),
    overwrite: bool = typer.Option(
        False, help="replace OUTPUT even if it holds files that are not a previous bellm export"
    ),
) -> None:
    """Export to ONNX: graph check (last k layers bidirectional), PyTorch parity, variant gates, then publish."""
    with user_errors():
        from bellm.export.api import ATTENTION_OPS, check_destination, export_encoder, normalize_variants
        from bellm.export.card import run_card_info
        from bellm.export.check import GraphCheckError
        from bellm.export.parity import ParityError

        wanted = normalize_variants(parse_variants(variants))
        check_destination(output, overwrite)  # before loading a model: refuse at once
        if attention_op not in ATTENTION_OPS:
            raise InputError(f"--attention-op must be one of {', '.join(ATTENTION_OPS)}, got {attention_op!r}")
        enc = encoder.load()
        try:
            result = export_encoder(enc, output, wanted, attention_op=attention_op, opset=opset, sts_gate=sts_gate,
                                    sts_max_pairs=sts_max_pairs, max_spearman_drop=max_drop, overwrite=overwrite,
                                    card_info=run_card_info(encoder.adapter))
        except (ParityError, GraphCheckError) as e:
            typer.secho(f"export failed, nothing published: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
    for name, v in result.variants.items():
        status = "published" if v.published else f"NOT published ({v.reason})"
        typer.echo(f"{name}: {status}")
    typer.echo(f"wrote {output} in {result.seconds:.1f}s (see {output}/export.json)")
