"""`bellm eval`: STS evaluation of an encoder, optional quality gates (exit 1 on failure) and a report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from bellm.cli import app
from bellm.cli.common import DTYPE_HELP, SUITE_HELP, check_output_dir, user_errors
from bellm.cli.options import EncoderChoice, encoder_options
from bellm.config import GateConfig
from bellm.errors import InputError


def parse_min_task(items: list[str]) -> dict[str, float]:
    """`["stsb=70", "sickr=65.5"]` → {"stsb": 70.0, "sickr": 65.5}."""
    out: dict[str, float] = {}
    for item in items:
        task, sep, value = item.partition("=")
        try:
            if not sep or not task.strip():
                raise ValueError
            out[task.strip()] = float(value)
        except ValueError:
            raise InputError(f"--min-task {item!r} must look like TASK=SPEARMAN, e.g. stsb=70") from None
    return out


def load_champion(spec: str) -> dict[str, Any] | None:
    """A champion result from a metrics.json / result JSON file, a run directory, or 'registry'."""
    if spec == "registry":
        from bellm.registry import champion_result

        return champion_result()
    path = Path(spec)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise InputError(f"--champion {spec}: no such file (give a metrics.json, a run directory or 'registry')")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"--champion {path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not ("tasks" in doc or isinstance(doc.get("trained"), dict)):
        raise InputError(f"--champion {path}: neither an evaluation result nor a metrics.json with 'trained'")
    return doc.get("trained", doc) if "tasks" not in doc else doc


def _print_table(result: dict[str, Any], others: dict[str, Any]) -> None:
    from bellm.report import comparison_rows, markdown_table

    typer.echo(markdown_table(comparison_rows(result, **others)))


def _gate_help(field: str) -> str:
    """A gate option's help: the `GateConfig` field's description (the gates are declared there, once)."""
    return "gate: " + (GateConfig.model_fields[field].description or field)


@app.command("eval")
@encoder_options
def eval_command(
    encoder: EncoderChoice = None,  # type: ignore[assignment] - filled by @encoder_options
    suite: list[str] = typer.Option(["gate"], "--suite", "-s", help=SUITE_HELP),
    max_pairs: int | None = typer.Option(None, min=1, help="N pairs of each task, evenly spaced (smoke runs)"),
    batch_size: int = typer.Option(32, min=1, help="sentences per forward pass"),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="directory for metrics.json, report.md and the PNGs"),
    baseline: str | None = typer.Option(None, help="'minilm': evaluate all-MiniLM-L6-v2 instead of a bellm model"),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="with --adapter: also evaluate the base model "
                                   "without it, as the report's zero-shot column"),
    config: Path | None = typer.Option(None, help="a run config JSON; its eval.gates are the starting gates"),
    min_avg: float | None = typer.Option(None, help=_gate_help("min_avg")),
    min_task: list[str] = typer.Option([], help=_gate_help("min_task") + ": TASK=MIN, e.g. stsb_dev=70 (repeatable)"),
    champion: str | None = typer.Option(None, help="champion to compare with: a metrics.json, a run directory, "
                                        "or 'registry' (the registry's current champion)"),
    max_regression: float | None = typer.Option(None, min=0, help=_gate_help("max_regression")),
    max_task_regression: float | None = typer.Option(None, min=0, help=_gate_help("max_task_regression")),
    cache: bool = typer.Option(True, help="reuse and store embeddings in $BELLM_HOME/cache/embeddings"),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Evaluate an encoder on STS (Spearman x100 of cosine similarity) and check quality gates.

    Exit codes: 0 ok, 1 a gate failed (each failed check is printed with its numbers), 2 bad input.

    Examples:\n
      bellm eval --suite full --output reports/zero-shot\n
      bellm eval --adapter runs/x/adapter --suite gate --min-task stsb_dev=75 --champion registry --max-regression 1\n
      bellm eval --baseline minilm --suite full
    """
    from pydantic import ValidationError

    from bellm.config import ConfigError
    from bellm.evaluation import evaluate_with_scores
    from bellm.gates import check_gates
    from bellm.profiles import build_config

    with user_errors():
        gates = build_config(file=config).eval.gates if config else GateConfig()
        given = {"min_avg": min_avg, "max_regression": max_regression, "max_task_regression": max_task_regression,
                 "min_task": {**gates.min_task, **parse_min_task(min_task)} if min_task else None}
        given = {k: v for k, v in given.items() if v is not None}
        check_output_dir(output)
        try:
            gates = GateConfig.model_validate({**gates.model_dump(), **given})
        except ValidationError as e:  # e.g. --min-avg NaN
            raise ConfigError("; ".join(f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-')}: {err['msg']}"
                                        for err in e.errors())) from None
        champ = load_champion(champion) if champion else None
        if baseline not in (None, "minilm"):
            raise InputError(f"--baseline {baseline!r}: only 'minilm' is available")
        suite_arg: str | list[str] = suite[0] if len(suite) == 1 else list(suite)
        if baseline == "minilm":
            from bellm.baselines import MiniLMEncoder

            try:
                enc: Any = MiniLMEncoder()
            except RuntimeError as e:  # the optional `baseline` extra is missing
                raise InputError(str(e)) from None
        else:
            enc = encoder.load(dtype=dtype)
            typer.echo(f"precision: {enc.precision['dtype']} ({enc.precision['reason']})", err=True)
        result, scores = evaluate_with_scores(enc, suite_arg, max_pairs, batch_size, cache)
        zs = None
        if zero_shot and encoder.adapter is not None and baseline is None:
            from bellm.encoder import load_encoder

            # The same settings (the adapter's, as settled above), without the adapter.
            base = load_encoder(enc.config, dtype=dtype)
            zs = evaluate_with_scores(base, suite_arg, max_pairs, batch_size, cache)[0]
    verdict = check_gates(result, gates, champ)
    ref = None
    if result["suite"] == "full" and not max_pairs and baseline is None:
        from bellm.baselines import minilm_reference_result

        ref = minilm_reference_result()
    others = {"zero_shot": zs, "champion": champ, "baseline": ref}
    _print_table(result, others)
    if output is not None:
        from bellm.report import write_report

        paths = write_report(output, result, zs, champ, ref, scores=scores, verdict=verdict if verdict.checks else None)
        typer.echo(f"wrote {', '.join(str(p) for p in paths.values())}")
    if verdict.checks:
        typer.echo(verdict.summary())
    if not verdict.passed:
        failed = "; ".join(c.line() for c in verdict.failed)
        typer.secho(f"gate failed: {failed}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
