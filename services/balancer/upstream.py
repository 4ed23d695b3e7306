"""Keep-alive HTTP/1.1 connections from the balancer to one gateway, parsed by httptools.

aiohttp's client spent about two thirds of the balancer's CPU per request on this path; the
balancer only ever sends a buffered request and reads a buffered answer, so it keeps a pool of
asyncio protocols and lets httptools (llhttp, as in uvicorn) do the parsing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import httptools

from ..kit import Failure
from ..kit.httpclient import IDLE_LIMIT_SECONDS

__all__ = ["Upstream", "UpstreamError", "UpstreamResponse"]

# Idle connections kept per gateway; more are opened under load and closed when returned.
MAX_IDLE = 256


class UpstreamError(ConnectionError):
    """A request to a gateway failed; ``failure`` says how (see :class:`Failure`)."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class UpstreamResponse:
    """A buffered answer from a gateway."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Connection(asyncio.Protocol):
    """One connection; it carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_only = False
        self.received_any = False
        self.keep_alive = True
        self.idle_since = 0.0
        self.aborted = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self._parser is None:
            self._fail(UpstreamError(Failure.BROKEN, "the gateway sent data nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(Failure.BROKEN, f"unreadable answer from the gateway: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamError(Failure.BROKEN, f"the gateway closed the connection ({exc or 'EOF'})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._head_only:  # a HEAD answer has headers only, whatever Content-Length says
            self.keep_alive = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, parser = self._waiter, self._parser
        if waiter is None or parser is None or waiter.done():
            return
        if parser.get_status_code() < 200:  # an interim answer (100 Continue, 103): the final one follows
            self._headers, self._body = [], []
            return
        self.keep_alive = self.keep_alive and parser.should_keep_alive()
        self._parser = None
        waiter.set_result(UpstreamResponse(parser.get_status_code(), self._headers, b"".join(self._body)))

    def _fail(self, error: UpstreamError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, head_only: bool, timeout: float) -> UpstreamResponse:
        """Send ``request`` and return the whole answer."""
        assert self.transport is not None
        self.received_any = False
        if self.closed or self.transport.is_closing():
            # The gateway hung up between connect (or the last answer) and now: it may be dying.
            raise UpstreamError(Failure.BROKEN, "the gateway closed the connection before the request")
        self._waiter = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._head_only = [], [], head_only
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self._waiter, timeout)
        except TimeoutError:
            self.transport.close()
            raise UpstreamError(Failure.TIMEOUT, f"no answer within {timeout} s") from None
        finally:
            self._waiter = None


class Upstream:
    """A pool of keep-alive connections to one gateway."""

    def __init__(self, host: str, port: int, connect_timeout: float, timeout: float) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._active: set[_Connection] = set()
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), self._connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(Failure.CONNECT, str(exc) or type(exc).__name__) from None
        return conn

    def _head(self, method: str, target: str, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        lines.extend(b"%s: %s\r\n" % header for header in headers)
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        return b"".join(lines)

    async def request(
        self, method: str, target: str, headers: Iterable[tuple[bytes, bytes]], body: bytes, idempotent: bool
    ) -> UpstreamResponse:
        """Send one request and return the answer; raise UpstreamError saying how it failed.

        A kept-alive connection that the gateway had already closed is replaced by a new one
        (once) when nothing came back on it and the request is safe to send again.
        """
        raw = self._head(method, target, headers, body) + body
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or now - conn.idle_since > IDLE_LIMIT_SECONDS:
                if conn.transport is not None:
                    conn.transport.close()
                continue
            try:
                response = await self._exchange(conn, raw, method)
            except UpstreamError as exc:
                stale = exc.failure is Failure.BROKEN and not conn.received_any and not conn.aborted
                if stale and idempotent:
                    self.close()  # its siblings are likely stale too
                    break
                raise
            self._release(conn)
            return response
        conn = await self._connect()
        response = await self._exchange(conn, raw, method)
        self._release(conn)
        return response

    async def _exchange(self, conn: _Connection, raw: bytes, method: str) -> UpstreamResponse:
        self._active.add(conn)
        try:
            return await conn.exchange(raw, method == "HEAD", self._timeout)
        finally:
            self._active.discard(conn)

    def abort_in_flight(self) -> int:
        """Cut every request waiting on this gateway (it was marked down); return how many.

        A paused gateway keeps its connections open and never answers: without this, its
        requests would wait for the full timeout before they could go elsewhere.
        """
        active = list(self._active)
        for conn in active:
            conn.aborted = True
            if conn.transport is not None:
                conn.transport.abort()
        self.close()
        return len(active)

    def _release(self, conn: _Connection) -> None:
        if conn.keep_alive and not conn.closed and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()
