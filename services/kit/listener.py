"""An HTTP/1.1 listener on asyncio: clients' requests read with httptools, answered by a coroutine.

For the services whose busiest path must cost little: the balancer's proxy path, and a gateway's
cache hits. aiohttp's server cost the balancer about 50 µs of CPU per request (its request and
response objects, routing, the writer), as much as nginx spends on a whole request, and a Flask
app on threads answers in no fair order under load (docs/benchmarks.md). A bare asyncio protocol
with httptools (llhttp, as in uvicorn) reads a buffered request, a subclass's ``answer`` returns
the status, headers and body, and the answer goes out in one write.

What every such listener must do is here: the 413 for a body over the limit (from Content-Length
before the body is read, or as a chunked body grows), ``100 Continue``, pipelined requests
answered in order, HTTP/1.0 keep-alive, absolute-form targets, a JSON 400 for anything llhttp
cannot parse (414 and 431 for a target or headers over 32 KiB), the client's connection headers
kept out of the request, and idle connections closed after the services' keep-alive time.

A connection serves one request at a time, in order: pipelined requests wait in a short queue,
and reading stops while it is full or while the client is not reading its answers.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from abc import ABC, abstractmethod
from collections import deque
from email.utils import formatdate
from http import HTTPStatus

import httptools

from .deadline import DEADLINE_HEADER
from .errors import ApiError
from .httpclient import NO_BODY_STATUSES
from .server import KEEPALIVE_SECONDS  # idle client connections stay open as long as the services'

__all__ = [
    "CONNECTION_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_TARGET_BYTES",
    "Answer",
    "HttpListener",
    "Request",
    "error_answer",
    "http_date",
]

# How often idle connections are looked for: one timer for the listener, not one per connection.
SWEEP_SECONDS = 5.0
# The longest request target, and the most header bytes a request may have; beyond them it is
# refused and the connection closed.
MAX_TARGET_BYTES = 32_768
MAX_HEADER_BYTES = 32_768
# Pipelined requests read ahead of the one being served; reading pauses beyond this.
MAX_QUEUED = 8
JSON_TYPE = b"application/json; charset=utf-8"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the ones
# the listener reads into the request itself (Host, Content-Length, the deadline).
CONNECTION_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
     b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length", DEADLINE_HEADER.lower().encode()}
)  # fmt: skip

# What answers a request: its status, headers and body.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """Return the Date header's value for now (RFC 9110 section 6.6.1), formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True).encode())
    return _date[1]


class Request:
    """One request read from a client: what ``HttpListener.answer`` answers."""

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


class HttpListener(ABC):
    """Listen for HTTP/1.1 clients; a subclass answers their requests (``answer``).

    ``max_body`` bounds a request's body; ``body_advice`` ends the 413's message (what to raise).
    ``dropped`` are the request headers a subclass never sees.
    """

    dropped: frozenset[bytes] = CONNECTION_HEADERS

    def __init__(self, max_body: int, body_advice: str) -> None:
        self.max_body = max_body
        self.body_advice = body_advice
        self.connections: set[_ClientConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def open(self) -> None:  # noqa: B027 (a hook: a subclass may have nothing to open)
        """Get ready to answer (a subclass's connections, its app); called before listening."""

    async def closed(self) -> None:  # noqa: B027 (a hook, as open)
        """Release what ``open`` took; called once every connection is closed."""

    @abstractmethod
    async def answer(self, request: Request, client: str) -> Answer:
        """Return the status, headers and body that answer ``request`` from ``client`` (its address)."""

    def refused(self, method: str, status: int) -> None:  # noqa: B027 (a hook: counted where there are metrics)
        """Count a request refused as it was read (``status``: 400, 413, 414, 431); a subclass with metrics does."""

    async def start(self, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> None:
        """Open, then listen on ``host``:``port``, or on ``sock``."""
        await self.open()
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
        await self.closed()


def error_answer(status: int, body: dict, headers: dict[str, str] | None = None) -> Answer:
    """Return the answer of an error: ``body`` (the kit's error body) as JSON, with ``headers``."""
    out = [(b"Content-Type", JSON_TYPE)]
    out.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())
    return status, out, json.dumps(body).encode()


class _ClientConnection(asyncio.Protocol):
    """One client's connection: parse its requests, answer each in turn."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.busy = False
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request | ApiError] = deque()
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
        self._request = Request()
        self._url: list[bytes] = []
        self._body: list[bytes] = []
        self._target_bytes = 0
        self._header_bytes = 0
        self._body_size = 0
        self._declared: int | None = None  # Content-Length
        self._continue = False  # Expect: 100-continue
        self._head_read = False
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
        if low in self.listener.dropped:
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
        self._head_read = True
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
        return f"the request body is larger than {self.listener.max_body} bytes; {self.listener.body_advice}"

    def _stop_reading(self) -> None:
        if self._reading and self.transport is not None and not self._closed:
            self._reading = False
            self.transport.pause_reading()

    def _refuse(self, error: ApiError) -> None:
        """Answer a request that could not be read with ``error``, once the ones before it are answered, and close."""
        # The method is known once the head is read (llhttp's is a default until then): else "other".
        self.listener.refused(self._request.method if self._head_read else "", error.status)
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
                    status, headers, body = error_answer(request.status, request.body())
                    request = Request()
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

    async def _answer(self, request: Request, listener: HttpListener) -> Answer:
        target = request.target
        if not target.startswith("/"):
            try:
                target = self._origin_form(request)
            except ApiError as exc:
                return error_answer(exc.status, exc.body(), exc.headers)
        request.target = target
        return await listener.answer(request, self.client)

    def _origin_form(self, request: Request) -> str:
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

    def _write(self, request: Request, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
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
