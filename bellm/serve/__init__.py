"""`bellm serve`: an HTTP embedding server over an ONNX export (OpenAI and TEI APIs, dynamic batching).

Modules: `app` (endpoints, limits, errors), `batcher` (queue + shared length-sorted batches), `metrics`
(Prometheus). Torch-free: it needs only `pip install "bellm[serve]"` (numpy, tokenizers, onnxruntime,
fastapi, uvicorn, prometheus-client, orjson); a test checks that serving never imports torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from bellm.serve.config import ServeConfig  # light: the CLI reads its defaults at start-up

__all__ = ["ServeConfig", "build_app", "resolve_target", "run_server"]


def resolve_target(target: str, variant: str | None = None, artifacts: str | os.PathLike[str] | None = None,
                   providers: list[str] | None = None) -> tuple[Path, str]:
    """(variant directory, default model name) for an export directory, a run id, or `champion`; with no
    `variant`, fp16 when a GPU provider serves it, else fp32 (`bellm.runtime.default_variant`)."""
    from bellm.registry import RegistryError, champion, get_run, other_champions
    from bellm.runtime import ExportFormatError, resolve_export_dir

    p = Path(target).expanduser()
    if p.exists():
        d = resolve_export_dir(p, variant, _providers(providers))
        parts = [q.name for q in (d.parent, d) if q.name]
        return d, "/".join(parts)
    if target == "champion":
        try:
            run = champion(artifacts)
        except RegistryError as e:
            raise ExportFormatError(str(e)) from None
        if run is None:
            others = other_champions(artifacts)
            if others:
                raise ExportFormatError(f"no champion for the default setting; other settings' champions: "
                                        f"{', '.join(others)} (serve one by its run id)")
            raise ExportFormatError("no champion yet (bellm runs list; bellm runs promote <id>)")
    else:
        try:
            run = get_run(target, artifacts)
        except RegistryError as e:
            raise ExportFormatError(f"{target!r} is neither an export directory nor a run id ({e})") from None
    if not (run.dir / "onnx").is_dir():
        raise ExportFormatError(f"run {run.id} has no ONNX export (status {run.manifest.get('status')!r})")
    d = resolve_export_dir(run.dir / "onnx", variant, _providers(providers))
    return d, f"{run.id}/{d.name}"


def _providers(requested: list[str] | None) -> list[str]:
    import onnxruntime as ort

    from bellm.runtime import pick_providers

    return pick_providers(ort.get_available_providers(), requested)


def build_app(path: str | os.PathLike[str], cfg: ServeConfig | None = None, model_name: str | None = None):  # noqa: ANN201
    """Load the export at `path` (providers and threads from `cfg`) and wrap it in the HTTP app."""
    from bellm.runtime import OnnxEncoder
    from bellm.serve.app import create_app

    cfg = cfg or ServeConfig()
    enc = OnnxEncoder(path, providers=cfg.providers, threads=cfg.threads, spin=cfg.spin)
    return create_app(enc, cfg, model_name or Path(path).name)


def run_server(app, cfg: ServeConfig, log_level: str = "info") -> None:  # noqa: ANN001
    """Serve until SIGINT/SIGTERM; then stop accepting, let in-flight requests finish, drain the queue.
    Connections must send their headers within `cfg.read_timeout_s`; at most `cfg.max_connections` are open."""
    import uvicorn

    from bellm.serve.limits import bounded_protocol

    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=log_level,
                timeout_graceful_shutdown=cfg.drain_timeout_s or None, access_log=False,
                http=bounded_protocol(cfg.max_connections, cfg.read_timeout_s))
