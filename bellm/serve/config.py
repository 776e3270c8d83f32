"""`bellm serve`'s settings: dynamic batching, request limits, execution.

Part of the one configuration family (a `bellm.config` section type), kept beside the server because no
training, evaluation or export number depends on it: editing it changes no cache key
(`bellm.provenance.NON_NUMERIC`).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from bellm.config import Section


class ServeConfig(Section):
    """`bellm serve` (not part of a run): dynamic batching, request limits, execution."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_batch_size: int = Field(32, ge=1, description="texts per forward pass (several requests share one)")
    max_batch_tokens: int = Field(16384, ge=1, description="padded tokens per forward pass (longest-first split)")
    call_overhead_tokens: float | None = Field(
        None, ge=0, description="one forward pass's fixed cost in padded tokens: a batch is split by length where "
        "that saves more padding (None: measured on the model at start-up, `measure_call_overhead`)")
    max_wait_ms: float = Field(2.0, ge=0, description="how long the oldest queued text waits for company")
    linger_ms: float = Field(
        2.0, ge=0, description="after a forward pass, how long to wait for the clients it answered to send their "
        "next texts (until as many requests as it answered arrive), so they share the next length-sorted plan "
        "(0: off)")
    max_inputs: int = Field(256, ge=1, description="texts per request (more: 413)")
    max_chars: int = Field(20000, ge=1, description="characters per text (more: 413)")
    max_queue: int = Field(4096, ge=1, description="texts waiting for a forward pass (more: 429)")
    max_body_bytes: int = Field(16 * 2**20, ge=1, description="request body bytes (more: 413, refused from "
                                "Content-Length before the body is read)")
    read_timeout_s: float = Field(30.0, gt=0, description="seconds a client has to send a request's headers (else "
                                  "the connection is closed) and then its body (else 408)")
    max_connections: int = Field(256, ge=1, description="open HTTP connections (more: 503 and closed at once); "
                                 "keep it below the process's descriptor limit (ulimit -n)")
    truncate: bool = Field(True, description="default for requests: cut over-long texts (False: 413)")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads (None: all cores)")
    spin: bool = Field(True, description="onnxruntime threads busy-wait between ops (False leaves idle CPU to "
                       "the HTTP loop, but was not faster on 2 cores and raised single-client latency)")
    providers: list[str] | None = Field(None, description="ORT providers (None: TensorRT/CUDA/CPU as present)")
    drain_timeout_s: float = Field(30.0, ge=0, description="on shutdown, how long in-flight requests may finish")

    @model_validator(mode="after")
    def _check(self) -> ServeConfig:
        if self.max_inputs > self.max_queue:
            raise ValueError("max_inputs must not exceed max_queue (a request could never be queued)")
        return self
