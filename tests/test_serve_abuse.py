"""`bellm serve` under abuse (issue 29): real text in any script, invalid Unicode, oversized and slow requests,
too many connections, a full queue. Each answers in the documented error JSON, memory stays bounded, and
`/health` keeps answering."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from export_helpers import shared_export
from serve_helpers import running

from bellm.runtime import OnnxEncoder
from bellm.serve.app import create_app
from bellm.serve.config import ServeConfig


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return shared_export(str(tiny_model_dir), str(tmp_path_factory.getbasetemp()))[0]


@pytest.fixture(scope="module")
def rt(export_dir: Path) -> OnnxEncoder:
    return OnnxEncoder(export_dir / "fp32", providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def url(rt: OnnxEncoder):
    with running(create_app(rt, ServeConfig(max_wait_ms=1), "tiny")) as u:
        yield u


def _raw(url: str, path: str, body: bytes) -> httpx.Response:
    return httpx.post(url + path, content=body, headers={"content-type": "application/json"}, timeout=30)


def _assert_error_shape(r: httpx.Response, path: str, status: int) -> str:
    """The documented error JSON: OpenAI's shape under /v1, TEI's elsewhere; returns the message."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if path.startswith("/v1/"):
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == status
        return err["message"]
    assert isinstance(err, str) and "error_type" in r.json()
    return err


def test_long_non_ascii_texts_are_embedded(url: str, rt: OnnxEncoder) -> None:
    """Issue 29 item 1: byte-level BPE gives several tokens per character; these answered 500."""
    rng = np.random.default_rng(1)
    texts = ["😀" * 40, "这是一个关于自然语言处理的长段落，" * 9, "🎉🔥💯 tweet " * 30]
    texts += ["".join(chr(int(c)) for c in rng.integers(0x4E00, 0x4E00 + 500, size=50)) for _ in range(5)]
    r = httpx.post(url + "/v1/embeddings", json={"input": texts}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["truncated"] == list(range(len(texts)))
    np.testing.assert_allclose([d["embedding"] for d in r.json()["data"]], rt.encode(texts), atol=1e-5)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed"])
def test_lone_surrogate_is_422_in_the_error_shape(url: str, path: str) -> None:
    key = "input" if path.startswith("/v1/") else "inputs"
    for body in (f'{{"{key}": "\\ud800"}}', f'{{"{key}": ["ok", "a\\udfffb"]}}'):
        message = _assert_error_shape(_raw(url, path, body.encode()), path, 422)
        assert message.startswith(f"{key}:") and "surrogate" in message, message
    assert httpx.get(url + "/health").status_code == 200
