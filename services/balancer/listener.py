"""The balancer's listener: HTTP/1.1 from clients, read with httptools, proxied to the gateways.

aiohttp's server cost the balancer about 50 µs of CPU per request (its request and response
objects, routing, the writer), a third of what the balancer spent: as much as nginx spends on
a whole request. The proxy path needs none of that: it reads a buffered request, forwards it
and writes a buffered answer. So the listener parses requests with httptools (llhttp, as in
uvicorn) on a bare asyncio protocol, and passes only the balancer's own routes (/health,
/metrics, /control, /lb/*, /openapi.json) to its aiohttp app, over a loopback connection to a
site only this process knows. Those routes keep aiohttp's validation and API document.

A connection serves one request at a time, in order: pipelined requests wait in a short queue,
and reading stops while it is full or while the client is not reading its answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from collections import deque
from collections.abc import Iterable
from http import HTTPStatus
from urllib.parse import unquote

import httptools
from aiohttp import web

from ..kit import ApiError, error_body
from ..kit.httpclient import NO_BODY_STATUSES
from ..kit.origin import refusal
from ..kit.server import KEEPALIVE_SECONDS  # idle client connections stay open as long as the services'
from .app import BALANCER, CRASH_MESSAGE, MAX_HEADER_BYTES, MAX_REQUEST_LINE, OWN_ROUTES, Balancer
from .proxy import HOP_BY_HOP, RESPONSE_SKIP
from .upstream import Upstream, UpstreamError

__all__ = ["Listener", "OwnRoutes"]

log = logging.getLogger(__name__)

# How often idle connections are looked for: one timer for the listener, not one per connection.
SWEEP_SECONDS = 5.0
# The longest request target, and the most header bytes a request may have (app.py, where its app's
# parser gets the same limits); beyond them it is refused and the connection closed.
MAX_TARGET_BYTES = MAX_REQUEST_LINE
# Pipelined requests read ahead of the one being served; reading pauses beyond this.
MAX_QUEUED = 8
JSON_TYPE = b"application/json; charset=utf-8"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
# A HEAD answer has no body to measure: the gateway's Content-Length says what a GET would get.
HEAD_SKIP = RESPONSE_SKIP - {b"content-length"}


class _Request:
    """One request read from a client."""

    __slots__ = (
        "body", "close", "deadline", "head_only", "headers", "host", "legacy", "method", "origin", "referer", "target"
    )  # fmt: skip

    def __init__(self) -> None:
        self.method = "GET"
        self.target = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.host: str | None = None
        self.origin: str | None = None
        self.referer: str | None = None
        self.deadline: str | None = None
        self.close = False
        self.head_only = False
        self.legacy = False  # HTTP/1.0, which keeps a connection open only when asked


class OwnRoutes:
    """Which requests are the balancer's own (app.OWN_ROUTES), matched as aiohttp's router would."""

    def __init__(self, routes: Iterable[tuple[str, str, str, bool]]) -> None:
        self._exact: set[tuple[str, str]] = set()
        self._patterns: list[tuple[str, re.Pattern[str], str]] = []
        for method, path, _handler, _admin in routes:
            if "{" in path:
                self._patterns.append((method, re.compile(re.sub(r"\{\w+\}", "[^{}/]+", path)), path))
            else:
                self._exact.add((method, path))

    def match(self, method: str, target: str) -> str | None:
        """Return the route (``/lb/backends/{name}``) that ``method`` on ``target`` (a path and its query) is, or None
        when it is not one of the balancer's own."""
        path = target.partition("?")[0]
        if "%" in path:
            path = unquote(path)
        if (method, path) in self._exact:
            return path
        return next((route for m, pattern, route in self._patterns if m == method and pattern.fullmatch(path)), None)


class Listener:
    """Serve the balancer: its proxy path here, its own routes through its aiohttp app."""

    def __init__(self, app: web.Application) -> None:
        self.balancer: Balancer = app[BALANCER]
        self.own = OwnRoutes(OWN_ROUTES)
        self.max_body = self.balancer.config.max_body_bytes
        self.connections: set[_ClientConnection] = set()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._server: asyncio.AbstractServer | None = None
        self._admin: Upstream | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> None:
        """Start the app (health checks, the proxy) and listen on ``host``:``port``, or on ``sock``."""
        await self._runner.setup()
        inner = socket.socket()
        inner.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, inner).start()
        config = self.balancer.config
        # Removing a gateway waits for its requests in flight: the own routes get that long and more.
        self._admin = Upstream(
            "127.0.0.1", inner.getsockname()[1], config.connect_timeout, config.upstream_timeout + 10, own_host=False
        )
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(self._connection, sock=sock, backlog=1024)
        else:
            self._server = await loop.create_server(self._connection, host, port, backlog=1024)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _connection(self) -> _ClientConnection:
        return _ClientConnection(self)

    def _sweep(self) -> None:
        """Close connections that sat idle (or trickled one request) for longer than KEEPALIVE_SECONDS."""
        cutoff = time.monotonic() - KEEPALIVE_SECONDS
        for connection in [c for c in self.connections if not c.busy and c.idle_since < cutoff]:
            connection.close()
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_SECONDS, self._sweep)

    async def stop(self, grace: float = 2.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds), then close everything."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in [c for c in self.connections if not c.busy]:
            connection.close()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            connection.close(abort=True)
        if self._admin is not None:
            self._admin.close()
        await self._runner.cleanup()

    async def answer(self, request: _Request, client: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Return the status, headers and body that answer ``request`` from ``client``."""
        method = request.method
        started = time.perf_counter()
        route = self.own.match(method, request.target)
        if route is not None:
            # Checked here too, though the app checks again (its port can be reached directly): aiohttp
            # would refuse a missing Host in plain text before the app's check.
            refused = self.refusal(request)
            if refused is None:
                return await self._own(request)  # the app counts and times it
            status, headers, body = _error(403, error_body(403, refused))
            self.balancer.metrics.observe(route, method, status, time.perf_counter() - started)
            return status, headers, body
        try:
            status, headers, body = await self._proxied(request, client)
        except ApiError as exc:
            status, headers, body = _error(exc.status, exc.body(), exc.headers)
        except Exception:
            log.exception("unhandled error")
            status, headers, body = _error(500, error_body(500, CRASH_MESSAGE))
        self.balancer.metrics.observe("proxy", method, status, time.perf_counter() - started)
        return status, headers, body

    def refusal(self, request: _Request) -> str | None:
        """Return why ``request`` must be refused with 403 (its Host, or its Origin for a change), or None."""
        seen = {"Host": request.host, "Origin": request.origin, "Referer": request.referer}
        return refusal(request.method, seen, self.balancer.allowed_hosts)

    async def _proxied(self, request: _Request, client: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        refused = self.refusal(request)
        if refused is not None:
            raise ApiError(403, refused)
        forwarded = await self.balancer.proxy.forward(
            request.method, request.target, request.headers, request.body, client, request.deadline
        )
        answer = forwarded.answer
        skip = HEAD_SKIP if request.head_only else RESPONSE_SKIP
        headers = [(k, v) for k, v in answer.headers if k.lower() not in skip]
        headers.append((b"X-Served-By", forwarded.backend.encode()))
        return answer.status, headers, answer.body

    async def _own(self, request: _Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Pass one of the balancer's own routes to its app, with the client's Host, Origin and headers."""
        assert self._admin is not None
        headers = request.headers
        if request.host is not None:
            headers = [(b"Host", request.host.encode("latin-1")), *headers]
        try:
            answer = await self._admin.request(request.method, request.target, headers, request.body, idempotent=False)
        except UpstreamError as exc:
            log.error("the balancer's own routes did not answer: %s", exc)
            return _error(500, error_body(500, CRASH_MESSAGE))
        headers = [(k, v) for k, v in answer.headers if k.lower() not in RESPONSE_SKIP]
        if answer.status >= 400 and not any(
            k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers
        ):
            # aiohttp's own refusals (a request it cannot parse) are plain text: every error of the lab is JSON.
            message = answer.body.decode("utf-8", "replace").strip()[:200] or f"status {answer.status}"
            return _error(answer.status, error_body(answer.status, message))
        return answer.status, headers, answer.body


def _error(
    status: int, body: dict, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    out = [(b"Content-Type", JSON_TYPE)]
    out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())
    return status, out, json.dumps(body).encode()


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parse its requests, answer each in turn."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.busy = False
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[_Request | ApiError] = deque()
        self.on_message_begin()  # the state of the request being read
        self._writable: asyncio.Future[None] | None = None
        self._closed = False
        self._reading = True

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) else ""
        self.listener.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            # httptools raises its own error, with ours as the context: an ApiError ends the connection.
            cause = exc.__context__
            if not isinstance(cause, ApiError):
                raise
            self._refuse(cause)
        except httptools.HttpParserUpgrade:
            # Upgrade (or CONNECT): the request is answered as any other, nothing after it is read.
            self._request.close = True
            self._stop_reading()
            if not self.busy:  # its head never completed
                self.close()
        except httptools.HttpParserError as exc:
            self._refuse(ApiError(400, f"malformed HTTP request: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.listener.connections.discard(self)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._request = _Request()
        self._url: list[bytes] = []
        self._body: list[bytes] = []
        self._target_bytes = 0
        self._header_bytes = 0
        self._body_size = 0
        self._declared: int | None = None  # Content-Length
        self._continue = False  # Expect: 100-continue
        self.idle_since = time.monotonic()

    def on_url(self, url: bytes) -> None:
        self._target_bytes += len(url)
        if self._target_bytes > MAX_TARGET_BYTES:
            raise ApiError(414, f"the request target is longer than {MAX_TARGET_BYTES} bytes")
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise ApiError(431, f"the request's headers are longer than {MAX_HEADER_BYTES} bytes")
        request = self._request
        low = name.lower()
        if low in HOP_BY_HOP:
            if low == b"host":
                request.host = value.decode("latin-1")
            elif low == b"x-request-deadline":
                request.deadline = value.decode("latin-1")
            elif low == b"content-length":
                self._declared = int(value) if value.isdigit() else None  # llhttp refuses any other
            return  # the rest describe the client's connection, not the request
        if low == b"origin":
            request.origin = value.decode("latin-1")
        elif low == b"referer":
            request.referer = value.decode("latin-1")
        elif low == b"expect" and value.lower() == b"100-continue":
            self._continue = True
            return  # answered here, once the head is read
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        request = self._request
        parser = self._parser
        request.method = parser.get_method().decode("latin-1")
        request.head_only = request.method == "HEAD"
        request.close = not parser.should_keep_alive()
        request.legacy = parser.get_http_version() == "1.0"
        length = self._declared
        if length is not None and length > self.listener.max_body:
            raise ApiError(413, self._too_large())
        if self._continue and (length or request.method in ("POST", "PUT", "PATCH")):
            assert self.transport is not None
            self.transport.write(CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.listener.max_body:
            raise ApiError(413, self._too_large())
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        request.body = b"".join(self._body)
        request.target = b"".join(self._url).decode("latin-1")
        self._queue.append(request)
        if len(self._queue) >= MAX_QUEUED or request.close:
            self._stop_reading()
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve())

    # the connection's side
    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.listener.max_body} bytes; send less, "
            "or raise SCALELAB_MAX_BODY_BYTES for the load balancer"
        )

    def _stop_reading(self) -> None:
        if self._reading and self.transport is not None and not self._closed:
            self._reading = False
            self.transport.pause_reading()

    def _refuse(self, error: ApiError) -> None:
        """Answer a request that could not be read with ``error``, once the ones before it are answered, and close."""
        self._queue.append(error)
        self._stop_reading()
        if not self.busy:
            self.busy = True
            asyncio.get_running_loop().create_task(self._serve())

    async def _serve(self) -> None:
        """Answer the queued requests in order."""
        queue = self._queue
        listener = self.listener
        try:
            while queue and not self._closed:
                request = queue.popleft()
                if isinstance(request, ApiError):  # what could not be read ends the connection
                    status, headers, body = _error(request.status, request.body())
                    request = _Request()
                    request.close = True
                else:
                    status, headers, body = await self._answer(request, listener)
                if self._closed:
                    return
                self._write(request, status, headers, body)
                if request.close:
                    self.close()
                    return
                if self._writable is not None:
                    await self._writable
                if not self._reading and len(queue) < MAX_QUEUED and self.transport is not None:
                    self._reading = True
                    self.transport.resume_reading()
        finally:
            self.busy = False
            self.idle_since = time.monotonic()

    async def _answer(self, request: _Request, listener: Listener) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        target = request.target
        if not target.startswith("/"):
            try:
                target = self._origin_form(request)
            except ApiError as exc:
                return _error(exc.status, exc.body(), exc.headers)
        request.target = target
        return await listener.answer(request, self.client)

    def _origin_form(self, request: _Request) -> str:
        """Return the path and query of an absolute-form target (``GET http://host/path``); its host is the Host."""
        try:
            url = httptools.parse_url(request.target.encode("latin-1"))
        except httptools.HttpParserInvalidURLError:
            url = None
        if url is None or url.schema not in (b"http", b"https") or not url.host:
            raise ApiError(400, f"the request target must be a path, such as /data, not {request.target[:100]!r}")
        # The target's host is the request's (RFC 9112 section 3.2.2): the Host check looks at it.
        request.host = url.host.decode("latin-1") + (f":{url.port}" if url.port else "")
        path = (url.path or b"/").decode("latin-1")
        return path + ("?" + url.query.decode("latin-1") if url.query else "")

    def _write(self, request: _Request, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        assert self.transport is not None
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b""))]
        lines.extend(b"%s: %s\r\n" % header for header in headers)
        if status >= 200 and status not in NO_BODY_STATUSES:
            if not request.head_only:
                lines.append(b"Content-Length: %d\r\n" % len(body))
        else:
            body = b""
        if request.close:
            lines.append(b"Connection: close\r\n")
        elif request.legacy:
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        if not request.head_only:
            lines.append(body)
        self.transport.write(b"".join(lines))

    def close(self, abort: bool = False) -> None:
        """Close the connection (``abort``: at once, dropping what is unsent)."""
        self._closed = True
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()
