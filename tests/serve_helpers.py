"""A real uvicorn server on a free loopback port, in a thread of the test process (for the serve tests)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 60.0, proc=None) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become healthy in {timeout}s")


@contextlib.contextmanager
def running(app) -> Iterator[str]:  # noqa: ANN001
    """Serve `app` with uvicorn on a socket bound to 127.0.0.1:0; yields the base URL; stops and drains after."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def assert_runs_without(code: str, modules: tuple[str, ...], timeout: float = 120) -> None:
    """Run `code` in a fresh interpreter; it must succeed and leave none of `modules` imported (the consumer
    runtime and the server never need torch)."""
    check = f"{code}bad = [m for m in {modules!r} if m in sys.modules]\nassert not bad, bad\nprint('ok')\n"
    res = subprocess.run([sys.executable, "-c", "import sys\n" + check], capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
