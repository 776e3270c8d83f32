"""`bellm serve` under abuse (issue 29): real text in any script, invalid Unicode, oversized and slow requests,
too many connections, a full queue. Each answers in the documented error JSON, memory stays bounded, and
`/health` keeps answering."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import running
from typer.testing import CliRunner

from bellm.runtime import OnnxEncoder
from bellm.serve.app import create_app
from bellm.serve.config import ServeConfig


@pytest.fixture(scope="module")
def url(rt: OnnxEncoder):
    with running(create_app(rt, ServeConfig(max_wait_ms=1), "tiny")) as u:
        yield u


def _cli():
    from bellm.cli import _register, app

    _register()
    return app


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


# --- a real `bellm serve` process with small limits ------------------------------------------------------------

LIMITS = {"max_body_bytes": 1_000_000, "read_timeout_s": 1.0, "max_connections": 24, "max_queue": 8,
          "max_inputs": 8, "max_batch_size": 64, "max_wait_ms": 1000.0}


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def server(export_dir: Path):
    """(url, pid) of `bellm serve` run with LIMITS and a descriptor limit of 128."""
    import resource
    import subprocess
    import sys

    from serve_helpers import free_port, wait_healthy

    port = free_port()
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in LIMITS.items()]
    cmd = [sys.executable, "-c", "from bellm.cli import main; main()", "serve", str(export_dir / "fp32"),
           "--port", str(port), "--threads", "1", "--no-spin", "--log-level", "warning", *flags]

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=low_fd_limit)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout=120, proc=proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_response(s: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP/1.1 response read from a raw socket (the server closes after it)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_limits_are_in_info_and_help(server) -> None:
    url, _ = server
    info = httpx.get(url + "/info").json()["server"]
    assert {k: info[k] for k in LIMITS} == LIMITS
    res = CliRunner().invoke(_cli(), ["serve", "--help"], env={"COLUMNS": "200"})
    for flag in ("--max-body-bytes", "--read-timeout-s", "--max-connections"):
        assert flag in res.output, flag


def test_oversized_body_is_refused_before_it_is_read(server) -> None:
    """Issue 29 item 3: a 300 MB POST was read whole (peak RSS 1.6 GB) before its 413."""
    url, pid = server
    before = _rss_kib(pid, "VmHWM")
    with _connect(url) as s:  # only the headers: a server that waits for the body never answers
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: 300000000\r\n\r\n" + b"[" * 65536)
        status, body = _read_response(s)
    assert status == 413 and "limit is 1000000" in body["error"]["message"] and body["error"]["code"] == 413
    # no Content-Length (chunked): counted as it arrives, refused past the limit; 50 MB offered
    chunk = b"x" * 1_000_000

    def chunks():
        for _ in range(50):
            yield chunk

    try:
        r = httpx.post(url + "/embed", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 413 and r.json()["error_type"] == "Validation"
    except httpx.TransportError:
        pass  # the server closed while we were still sending: also a refusal
    assert _rss_kib(pid, "VmHWM") - before < 64 * 1024  # peak RSS grew by less than 64 MiB
    assert httpx.get(url + "/health").status_code == 200


def test_slow_clients_are_cut_off_and_health_still_answers(server) -> None:
    """Half-sent requests were held forever; with 128 descriptors, 200 of them made /health fail."""
    url, pid = server
    slow_body = _connect(url)  # complete headers, then a body that stops after 10 of 100 bytes
    slow_body.sendall(b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: 100\r\n\r\n" + b'{"inputs":')
    held = []
    for _ in range(200):  # half-sent headers: more than max_connections and the descriptor limit
        try:
            s = _connect(url)
            s.sendall(b"POST /embed HTTP/1.1\r\nhost: x\r\n")
            held.append(s)
        except OSError:
            break
    status, body = _read_response(slow_body)
    assert status == 408 and body["error_type"] == "Validation"
    deadline = time.monotonic() + 10
    while True:  # within read_timeout_s the held connections are closed and /health answers again
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "/health never answered"
        time.sleep(0.1)
    for s in held:  # each was closed by the server (EOF), none left open
        s.settimeout(5)
        try:
            assert s.recv(65536) is not None
        except OSError:
            pass
        s.close()
    assert len(os.listdir(f"/proc/{pid}/fd")) < 100


def test_too_many_connections_get_503_at_once(server) -> None:
    url, _ = server
    idle = [_connect(url) for _ in range(LIMITS["max_connections"])]
    try:
        with _connect(url) as extra:
            status, body = _read_response(extra)
        assert status == 503 and body["error_type"] == "Overloaded"
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed"])
def test_invalid_bodies_answer_in_the_error_shape(server, path: str) -> None:
    url, _ = server
    key = "input" if path.startswith("/v1/") else "inputs"
    for body in (f'{{"{key}": "caf\xe9"}}'.encode("latin-1"), b"[" * 5000 + b"]" * 5000,
                 f'{{"{key}": "\\ud83d"}}'.encode()):
        r = _raw(url, path, body)
        _assert_error_shape(r, path, 422)
    assert httpx.get(url + "/health").status_code == 200


def test_queue_overflow_is_429_and_the_rest_complete(server) -> None:
    """With max_wait_ms=1000 and a batch that never fills, the first request's 8 texts wait in the queue: a
    second concurrent request overflows max_queue=8."""
    url, pid = server
    results: list[httpx.Response] = []
    # Clients made up front and a barrier: on a loaded machine, requests sent as their threads started arrived
    # one by one, each served before the next came (CI saw six 200s).
    clients = [httpx.Client(timeout=30) for _ in range(6)]
    start = threading.Barrier(len(clients))

    def send(i: int) -> None:
        start.wait()
        results.append(clients[i].post(url + "/v1/embeddings", json={"input": [f"text {i} {j}" for j in range(8)]}))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    codes = sorted(r.status_code for r in results)
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
    for r in results:
        if r.status_code == 429:
            _assert_error_shape(r, "/v1/embeddings", 429)
            assert r.headers["retry-after"] == "1"
    assert httpx.get(url + "/health").status_code == 200
