"""Connection-level limits of `bellm serve`: request body size, time to read a request, open connections.

uvicorn reads any body whole and waits forever for a half-sent request, so a 300 MB POST, or a few hundred
clients that stop mid-request, used to exhaust memory or descriptors (issue 29). Two pieces bound them:

* `BodyLimit` (ASGI middleware, in every app): an over-long `Content-Length` is refused (413) before a byte
  of the body is read; a body without one is counted as it arrives; the whole body must arrive within
  `read_timeout_s` of its headers (else 408). The app then gets the buffered body.
* `bounded_protocol` (uvicorn's HTTP protocol, used by `run_server`): a connection must send a request's
  headers within `read_timeout_s` of opening or of its previous response, else it is closed; past
  `max_connections` open connections a new one gets a 503 and is closed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Reject = Callable[[str, int, str, str], Response]  # (path, status, message, kind) → the app's error JSON


class BodyLimit:
    """Read each request body up front, bounded in size and time (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, read_timeout_s: float, reject: Reject) -> None:
        self.app, self.max_bytes, self.timeout, self.reject = app, max_body_bytes, read_timeout_s, reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.strip().isdigit():
                await self._refuse(scope, receive, send, 400, "Content-Length is not a number", "invalid_request_error")
                return
            if int(length) > self.max_bytes:
                await self._refuse(scope, receive, send, 413, f"the body has {int(length)} bytes; the limit is "
                                   f"{self.max_bytes} (--max-body-bytes)", "payload_too_large")
                return
        chunks: list[bytes] = []
        size, more = 0, True
        deadline = asyncio.get_running_loop().time() + self.timeout
        while more:
            left = deadline - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
            except TimeoutError:
                await self._refuse(scope, receive, send, 408, f"the body did not arrive within {self.timeout:g} s "
                                   "(--read-timeout-s)", "timeout")
                return
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, 413, f"the body is longer than {self.max_bytes} bytes "
                                   "(--max-body-bytes)", "payload_too_large")
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int, message: str, kind: str) -> None:
        res = self.reject(scope["path"], status, message, kind)
        res.headers["connection"] = "close"  # the rest of the body is never read: drop the connection after
        await res(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body once, then the client's own messages (disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def bounded_protocol(max_connections: int, read_timeout_s: float) -> type:
    """uvicorn's HTTP protocol class (httptools or h11, as uvicorn picks) with a header deadline and a cap on
    open connections."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    busy = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"retry-after: 1\r\ncontent-length: %d\r\n\r\n%s")
    body = (b'{"error": "too many open connections (--max-connections %d)", "error_type": "Overloaded"}'
            % max_connections)

    class BoundedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # noqa: ANN001
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(busy % (len(body), body))
                transport.close()
                return
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()  # the next request's headers have read_timeout_s from now

        def connection_lost(self, exc: Exception | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.loop.call_later(read_timeout_s, self._expire)

        def _expire(self) -> None:
            """No complete request headers in time: close (a request in flight is BodyLimit's to time)."""
            if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                self.transport.close()

    return BoundedHTTPProtocol
