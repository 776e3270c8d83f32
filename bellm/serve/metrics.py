"""Prometheus metrics of one server (its own registry, so several apps in a process never share counters)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Requests by endpoint and status, request latency, batch sizes and run times, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("bellm_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "code"], registry=r)
        self.latency = Histogram("bellm_request_seconds", "HTTP request latency (receive to last byte)",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.inputs = Counter("bellm_inputs", "texts embedded", registry=r)
        self.tokens = Counter("bellm_tokens", "prompted tokens embedded (after truncation)", registry=r)
        self.truncated = Counter("bellm_truncated_inputs", "texts cut to max_length", registry=r)
        self.rejected = Counter("bellm_rejected", "requests refused by a limit", ["reason"], registry=r)
        self.batch_size = Histogram("bellm_batch_size", "texts per forward pass", buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("bellm_batch_seconds", "forward pass time (pad + ORT run)",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("bellm_queue_depth", "texts waiting for a forward pass", registry=r)

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text exposition."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
