"""The HTTP app: OpenAI- and TEI-compatible embedding endpoints over `OnnxEncoder`, with dynamic batching.

Endpoints:
* `POST /v1/embeddings` — OpenAI request/response (`input` str or list, `encoding_format` float|base64,
  `usage` token counts); bellm adds `truncated` (indices of inputs cut to max_length) and accepts `truncate`.
* `POST /embed` — Text Embeddings Inference style: `inputs` str or list, `normalize`, `truncate`; returns
  a list of vectors. In both APIs `truncate` defaults to the server's `--truncate` (on, unlike TEI's default):
  a text past max_length tokens is cut at the end of the sentence (the prompt stays whole) and reported.
* `GET /health`, `GET /info` (the model's bellm.json + the server's limits), `GET /metrics` (Prometheus).

Errors are JSON, never a crash: 408 (the body did not arrive within `read_timeout_s`), 413 (a body over
`max_body_bytes`, refused from its Content-Length before it is read; too many inputs, too long a text, an
over-long text with truncate=false),
422 (bad JSON or a wrong type, naming the field), 429 (queue full, with Retry-After), 503 (draining). Under
`/v1` they have OpenAI's shape `{"error": {"message", "type", "param", "code"}}`, elsewhere TEI's
`{"error": ..., "error_type": ...}`. Every response carries `X-Bellm-Truncated` (how many inputs were cut).

Torch-free: imports numpy, tokenizers, onnxruntime, fastapi, prometheus_client and orjson only.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bellm import __version__
from bellm.errors import InputError
from bellm.runtime import OnnxEncoder
from bellm.serve.batcher import Batcher, QueueFull, ShuttingDown, measure_call_overhead
from bellm.serve.config import ServeConfig
from bellm.serve.limits import BodyLimit
from bellm.serve.metrics import Metrics
from bellm.tokenize import Encoded, check_unicode, encode_one, unique_texts

INLINE_CHARS = 2000  # requests up to this many characters are tokenised on the event loop itself
ENDPOINTS = ("/v1/embeddings", "/embed", "/health", "/info", "/metrics")


class ApiError(Exception):
    """An error answered as JSON with `status`; `param` names the offending request field."""

    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def _unicode(t: str, where: str) -> str:
    """JSON can spell a lone surrogate (`"\\ud800"`), which has no UTF-8 form: a 422, not a tokenizer crash."""
    try:
        check_unicode(t)
    except InputError as e:
        raise ValueError(f"{where}{e}") from None
    return t


def _texts(v: Any) -> Any:
    """A str or a non-empty list of str; anything else is a 422 that says which item is wrong."""
    if isinstance(v, str):
        return _unicode(v, "")
    if isinstance(v, list):
        if not v:
            raise ValueError("must not be empty")
        for i, t in enumerate(v):
            if not isinstance(t, str):
                raise ValueError(f"item {i} is {type(t).__name__}, expected a string (token arrays are not supported)")
            _unicode(t, f"item {i}: ")
        return v
    raise ValueError(f"expected a string or a list of strings, got {type(v).__name__}")


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's `POST /v1/embeddings` body (`model` and `user` are accepted and ignored)."""

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: str | None = None
    truncate: StrictBool | None = None  # bellm extension: False → 413 instead of cutting a long text

    _input = field_validator("input", mode="before")(_texts)


class TeiEmbedRequest(BaseModel):
    """Text Embeddings Inference's `POST /embed` body."""

    model_config = ConfigDict(extra="ignore")

    inputs: str | list[str]
    normalize: StrictBool = True
    truncate: StrictBool | None = None
    truncation_direction: Literal["right", "left", "Right", "Left"] = "right"
    prompt_name: str | None = None
    dimensions: StrictInt | None = None

    _inputs = field_validator("inputs", mode="before")(_texts)


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (N, dim) float32, unit length
    tokens: int  # prompted tokens after truncation, summed over the inputs
    truncated: list[int]  # indices of inputs cut to max_length


class EmbeddingService:
    """Request limits, prompted tokenisation and the batcher, shared by both APIs."""

    def __init__(self, encoder: OnnxEncoder, cfg: ServeConfig, metrics: Metrics) -> None:
        self.encoder, self.cfg, self.metrics = encoder, cfg, metrics
        self.batcher = Batcher(encoder.run_batch, encoder.dim, cfg.max_batch_size, cfg.max_batch_tokens,
                               cfg.max_wait_ms / 1000.0, cfg.max_queue, metrics,
                               overhead_tokens=cfg.call_overhead_tokens or 0.0, linger_s=cfg.linger_ms / 1000.0)

    def calibrate(self) -> None:
        """Warm the session up and, unless configured, measure a forward pass's fixed cost (worker thread)."""
        self.encoder.encode(["warm-up"])
        if self.cfg.call_overhead_tokens is None:
            self.batcher.overhead_tokens = measure_call_overhead(self.encoder.run_batch)

    def _tokenize(self, texts: list[str]) -> tuple[list[Encoded], np.ndarray]:
        uniq, inverse = unique_texts(texts)
        enc = self.encoder
        return [encode_one(enc.tokenizer, enc.template, t, enc.max_length) for t in uniq], inverse

    def _reject(self, reason: str, status: int, message: str, param: str | None, kind: str) -> ApiError:
        self.metrics.rejected.labels(reason).inc()
        return ApiError(status, message, param, kind)

    async def embed(self, texts: list[str], truncate: bool | None, param: str) -> Embedded:
        cfg = self.cfg
        if len(texts) > cfg.max_inputs:
            raise self._reject("max_inputs", 413, f"{len(texts)} inputs in one request; the limit is {cfg.max_inputs}",
                               param, "payload_too_large")
        for i, t in enumerate(texts):
            if len(t) > cfg.max_chars:
                raise self._reject("max_chars", 413, f"{param}[{i}] has {len(t)} characters; the limit is "
                                   f"{cfg.max_chars}", param, "payload_too_large")
        with self.batcher.arriving():
            if sum(map(len, texts)) <= INLINE_CHARS:  # cheaper than a thread hop
                encs, inverse = self._tokenize(texts)
            else:
                encs, inverse = await run_in_threadpool(self._tokenize, texts)
        cut = [int(i) for i, j in enumerate(inverse) if encs[j].truncated]
        if cut and not (cfg.truncate if truncate is None else truncate):
            raise self._reject("too_long", 413, f"{param}[{cut[0]}] is longer than max_length="
                               f"{self.encoder.max_length} tokens (prompt included); send truncate=true to cut "
                               f"the sentence", param, "payload_too_large")
        try:
            vectors = await self.batcher.submit(encs)
        except QueueFull as e:
            raise self._reject("queue_full", 429, str(e), None, "overloaded") from None
        except ShuttingDown as e:
            raise ApiError(503, str(e), None, "unavailable") from None
        except RuntimeError as e:
            raise ApiError(500, str(e), None, "server_error") from None
        tokens = sum(len(encs[j].ids) for j in inverse)
        self.metrics.inputs.inc(len(texts))
        self.metrics.tokens.inc(tokens)
        self.metrics.truncated.inc(len(cut))
        return Embedded(vectors[inverse], tokens, cut)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error_response(path: str, err: ApiError) -> Response:
    headers = {"Retry-After": "1"} if err.status in (429, 503) else None
    if path.startswith("/v1/"):
        body: dict[str, Any] = {"error": {"message": err.message, "type": err.kind, "param": err.param,
                                          "code": err.status}}
    else:
        kind = {400: "Validation", 408: "Validation", 413: "Validation", 422: "Validation", 429: "Overloaded",
                503: "Unhealthy"}.get(err.status, "Backend")
        body = {"error": err.message, "error_type": kind}
    return _json(body, err.status, headers)


def _validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem, as `field: message` (JSON syntax errors name `body`)."""
    err = exc.errors()[0]
    loc = [str(x) for x in err.get("loc", ()) if x != "body"]
    field = "body" if err.get("type") == "json_invalid" or not loc else ".".join(loc)
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return ApiError(422, f"{field}: {msg}", field)


class _MetricsMiddleware:
    """Count every request by endpoint and status, and time it (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        status, t0 = 500, time.perf_counter()

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)


def create_app(encoder: OnnxEncoder, cfg: ServeConfig | None = None, model_name: str = "bellm") -> FastAPI:
    """A FastAPI app serving `encoder`; the batcher starts and drains with the app's lifespan."""
    cfg = cfg or ServeConfig()
    metrics = Metrics()
    service = EmbeddingService(encoder, cfg, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.get_running_loop().run_in_executor(None, service.calibrate)
        service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.close()  # uvicorn has let in-flight requests finish; drain the rest

    app = FastAPI(title="bellm embeddings", version=__version__, lifespan=lifespan, docs_url="/docs",
                  redoc_url=None)
    app.state.service = service
    app.add_middleware(BodyLimit, max_body_bytes=cfg.max_body_bytes, read_timeout_s=cfg.read_timeout_s,
                       reject=lambda path, status, msg, kind: _error_response(path, ApiError(status, msg, None, kind)))
    app.add_middleware(_MetricsMiddleware, metrics=metrics)  # outermost: refused bodies are counted too

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(request.url.path, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request.url.path, _validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": not UTF-8, or JSON nested too deeply
            err = ApiError(422, "body: not a JSON document in UTF-8 (or nested too deeply)", "body")
        else:  # 404, 405, ...: the same error shape as everything else
            err = ApiError(exc.status_code, str(exc.detail), None, "invalid_request_error")
        return _error_response(request.url.path, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return _error_response(request.url.path, ApiError(500, f"{type(exc).__name__}: {exc}", None, "server_error"))

    def headers(res: Embedded) -> dict[str, str]:
        return {"X-Bellm-Truncated": str(len(res.truncated))}

    @app.post("/v1/embeddings")
    async def openai_embeddings(req: OpenAIEmbeddingRequest) -> Response:
        if req.dimensions is not None and req.dimensions != encoder.dim:
            raise ApiError(422, f"dimensions: this model has {encoder.dim} dimensions; others are not supported",
                           "dimensions")
        texts = [req.input] if isinstance(req.input, str) else req.input
        res = await service.embed(texts, req.truncate, "input")
        if req.encoding_format == "base64":
            vecs: Any = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in res.vectors]
        else:
            vecs = list(res.vectors)
        payload = {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)],
            "model": model_name,
            "usage": {"prompt_tokens": res.tokens, "total_tokens": res.tokens},
            "truncated": res.truncated,
        }
        return _json(payload, headers=headers(res))

    @app.post("/embed")
    async def tei_embed(req: TeiEmbedRequest) -> Response:
        if not req.normalize:
            raise ApiError(422, "normalize: this model L2-normalises inside the graph; normalize=false is not "
                           "available", "normalize")
        if req.truncation_direction.lower() != "right":
            raise ApiError(422, "truncation_direction: only 'right' (the sentence's end; the prompt is kept)",
                           "truncation_direction")
        if req.prompt_name is not None:
            raise ApiError(422, "prompt_name: the prompt is fixed by the model (see /info)", "prompt_name")
        if req.dimensions is not None and req.dimensions != encoder.dim:
            raise ApiError(422, f"dimensions: this model has {encoder.dim} dimensions", "dimensions")
        texts = [req.inputs] if isinstance(req.inputs, str) else req.inputs
        res = await service.embed(texts, req.truncate, "inputs")
        return _json(res.vectors, headers=headers(res))

    @app.get("/health")
    async def health() -> Response:
        ok = service.batcher.running
        return _json({"status": "ok" if ok else "unavailable", "model": model_name}, 200 if ok else 503)

    @app.get("/info")
    async def info() -> Response:
        server = {"model_id": model_name, "bellm_version": __version__, "providers": encoder.providers,
                  "path": str(encoder.path), **cfg.model_dump(exclude={"host", "port"}),
                  "call_overhead_tokens": round(service.batcher.overhead_tokens, 2)}
        return _json({**encoder.contract, "server": server})

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    return app
