"""`bellm serve`: an HTTP embedding server (OpenAI + TEI APIs) over an ONNX export, a run, or the champion."""

from __future__ import annotations

from pathlib import Path

import typer

from bellm.cli import app
from bellm.cli.common import user_errors
from bellm.serve.config import ServeConfig


def _opt(field: str, flag: str | None = None, help: str | None = None) -> typer.models.OptionInfo:
    """A typer option whose default (and help, unless given) are ServeConfig's: the one home of serving defaults."""
    info = ServeConfig.model_fields[field]
    return typer.Option(info.default, *([flag] if flag else []), help=help or info.description)


@app.command("serve")
def serve(
    target: str = typer.Argument(..., help="an export directory (variant or root), a run id, or 'champion'"),
    host: str = _opt("host", help="interface to listen on (0.0.0.0: every interface)"),
    port: int = _opt("port", help="TCP port"),
    variant: str | None = typer.Option(None, help="fp32 | fp16 | int8 (default: fp16 on CUDA/TensorRT, else fp32)"),
    model_name: str | None = typer.Option(None, help="name reported in responses (default: run id/variant)"),
    max_batch_size: int = _opt("max_batch_size"),
    max_batch_tokens: int = _opt("max_batch_tokens"),
    call_overhead_tokens: float | None = _opt("call_overhead_tokens"),
    max_wait_ms: float = _opt("max_wait_ms"),
    linger_ms: float = _opt("linger_ms"),
    max_inputs: int = _opt("max_inputs"),
    max_chars: int = _opt("max_chars"),
    max_queue: int = _opt("max_queue"),
    max_body_bytes: int = _opt("max_body_bytes"),
    read_timeout_s: float = _opt("read_timeout_s"),
    max_connections: int = _opt("max_connections"),
    truncate: bool = _opt("truncate", "--truncate/--no-truncate"),
    threads: int | None = _opt("threads"),
    spin: bool = _opt("spin", "--spin/--no-spin"),
    providers: str | None = typer.Option(None, help="comma-separated ORT providers (default: TensorRT/CUDA/CPU)"),
    artifacts: Path | None = typer.Option(None, help="registry root for run ids (default ./artifacts)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Serve embeddings over HTTP: POST /v1/embeddings (OpenAI), POST /embed (TEI), GET /health, /info, /metrics."""
    with user_errors():
        from pydantic import ValidationError

        from bellm.config import ConfigError
        from bellm.serve import build_app, resolve_target, run_server

        try:
            cfg = ServeConfig(
                host=host, port=port, max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                call_overhead_tokens=call_overhead_tokens, max_wait_ms=max_wait_ms, linger_ms=linger_ms,
                max_inputs=max_inputs,
                max_chars=max_chars, max_queue=max_queue, max_body_bytes=max_body_bytes,
                read_timeout_s=read_timeout_s, max_connections=max_connections,
                truncate=truncate, threads=threads, spin=spin,
                providers=[p.strip() for p in providers.split(",") if p.strip()] if providers else None,
            )
        except ValidationError as e:  # one clear line per bad option, exit 2
            lines = [f"--{'-'.join(str(x) for x in err['loc']).replace('_', '-') or 'options'}: {err['msg']}"
                     for err in e.errors()]
            raise ConfigError("; ".join(lines)) from None
        # ExportFormatError is an InputError; the default variant follows the providers (fp16 on CUDA)
        path, default_name = resolve_target(target, variant, artifacts, cfg.providers)
        server_app = build_app(path, cfg, model_name or default_name)
        typer.echo(f"serving {path} as {model_name or default_name!r} on http://{host}:{port}", err=True)
    run_server(server_app, cfg, log_level)
