"""Keep-alive HTTP/1.1 connections from an asyncio service to one backend, parsed by httptools.

The asyncio side of the kit's HTTP client (httpclient.py is the threads' side): the balancer
forwards requests to the gateways over it, and a gateway asks the cache over it. aiohttp's
client spent about two thirds of the balancer's CPU per request on this path; a caller here only
ever sends a buffered request and reads a buffered answer, so it keeps a pool of asyncio
protocols and lets httptools (llhttp, as in uvicorn) do the parsing.

A connection carries one request at a time, and goes back to the pool only when the answer to
that request was read whole and nothing else came or waits on it. Any byte a backend sends
outside an answer to a request written on that connection (after the answer, a second answer,
anything while the connection is idle) closes the connection: read as the answer to the next
request, such bytes would hand one client's answer to another.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Iterable

import httptools

from .httpclient import IDLE_LIMIT_SECONDS, NO_BODY_STATUSES, SWITCHING_PROTOCOLS
from .pool import Failure

__all__ = ["Upstream", "UpstreamError", "UpstreamResponse"]

# Idle connections kept per backend; more are opened under load and closed when returned.
MAX_IDLE = 256


class UpstreamError(ConnectionError):
    """A request to a backend failed; ``failure`` says how (see :class:`Failure`)."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.failure = failure


class UpstreamResponse:
    """A buffered answer from a backend."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Unasked(Exception):
    """The backend began another answer after the final one; raised to stop the parser there."""


class _Connection(asyncio.Protocol):
    """One connection; it carries one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # False once anything makes the connection unfit for another request; never True again.
        self.reusable = True
        self.received_any = False
        self.idle_since = 0.0
        self.aborted = False
        # True from writing a request until its final answer is complete: the only time bytes are welcome.
        self._expecting = False
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        # One parser for the connection's life: llhttp starts afresh after each complete keep-alive answer.
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_only = False
        self._head_read = False
        self._poll: select.poll | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        if not self._expecting:
            # Nothing written on this connection asked for these bytes.
            self.discard()
            return
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Failure.BROKEN, "the backend switched protocols (101), which a kit client never asks for")
        except httptools.HttpParserError as exc:
            if self._expecting:
                self._fail(Failure.BROKEN, f"unreadable answer from the backend: {exc}")
            else:  # more came after the final answer (see on_message_begin); that answer stands
                self.discard()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        # Still expecting means the backend closed it, not this side (discard ends expecting).
        if self._expecting and exc is None and self._ends_at_close():
            self.on_message_complete()
            return
        self._fail(Failure.BROKEN, f"the backend closed the connection ({exc or 'EOF'})")

    # httptools callbacks
    def on_message_begin(self) -> None:
        if not self._expecting:
            raise _Unasked
        self._head_read = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_read = True
        if self._head_only:  # a HEAD answer has headers only, whatever Content-Length says
            self.reusable = False  # llhttp would read the next answer's bytes as this one's body
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._expecting:  # a HEAD answer completed by hand, or the connection failed
            return
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status < 100 or status == SWITCHING_PROTOCOLS:
                self._fail(Failure.BROKEN, f"the backend answered with status {status}")
                return
            # An interim answer (100 Continue, 103 Early Hints) to this request: the final one follows.
            self._headers, self._body = [], []
            return
        self._expecting = False
        self.reusable = self.reusable and parser.should_keep_alive()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(UpstreamResponse(status, self._headers, b"".join(self._body)))

    def _ends_at_close(self) -> bool:
        """Return whether the answer being read has no framing, so the backend's close ends it (HTTP/1.0 style)."""
        status = self._parser.get_status_code()
        if not self._head_read or self._head_only or status < 200 or status in NO_BODY_STATUSES:
            return False
        return not any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers)

    # the pool's side
    def _fail(self, failure: Failure, detail: str) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(UpstreamError(failure, detail))
        self.discard()

    def discard(self, abort: bool = False) -> None:
        """Close the connection for good (``abort``: at once, with a reset); whatever still arrives is no answer."""
        self.reusable = False
        self._expecting = False
        transport = self.transport
        if transport is None:
            return
        # Unsent request bytes are dropped, not flushed: after an early answer the backend would
        # take the rest of a body (whatever a client put in it) for a request of its own.
        if abort or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def usable(self) -> bool:
        """Return whether this idle connection may carry a request: open, and nothing arrived on it.

        Also asks the kernel: bytes (or the backend's close) that reached the socket in this turn of
        the event loop are not delivered yet, and would otherwise be read as the next answer.
        """
        if not self.reusable or self.closed or self.transport is None or self.transport.is_closing():
            return False
        return self._poll is None or not self._poll.poll(0)

    def spent(self) -> bool:
        """Return whether this connection, its exchange done, must not go back to the pool.

        Bytes of the request still unsent mean the backend answered early (a 413, say) and would
        read the rest of the body as a request of its own.
        """
        transport = self.transport
        if not self.reusable or self.closed or transport is None or transport.is_closing():
            return True
        return bool(transport.get_write_buffer_size())

    async def exchange(self, request: bytes, head_only: bool, timeout: float) -> UpstreamResponse:
        """Send ``request`` and return the whole answer."""
        assert self.transport is not None
        self.received_any = False
        if self.closed or self.transport.is_closing():
            # The backend hung up between connect (or the last answer) and now: it may be dying.
            raise UpstreamError(Failure.BROKEN, "the backend closed the connection before the request")
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        self._headers, self._body, self._head_only, self._head_read = [], [], head_only, False
        self._expecting = True
        self.transport.write(request)
        # A timer on the waiter rather than asyncio.wait_for, which wraps it in another future on every request.
        timer = loop.call_later(timeout, self._expire, waiter, timeout)
        try:
            return await waiter
        except BaseException:
            # Failed, timed out or cancelled: an answer still on its way must not become the next request's.
            self.discard()
            raise
        finally:
            timer.cancel()
            self._waiter = None

    @staticmethod
    def _expire(waiter: asyncio.Future[UpstreamResponse], timeout: float) -> None:
        if not waiter.done():
            waiter.set_exception(UpstreamError(Failure.TIMEOUT, f"no answer within {timeout} s"))


class Upstream:
    """A pool of keep-alive connections to one backend."""

    def __init__(self, host: str, port: int, connect_timeout: float, timeout: float, own_host: bool = True) -> None:
        """Connect to ``host``:``port``; ``own_host``: name it as Host, else the caller's headers carry one."""
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._active: set[_Connection] = set()
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # an IPv6 address goes in brackets
        self._host_header = f"Host: {authority}\r\n".encode() if own_host else b""

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
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        idempotent: bool,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send one request and return the answer; raise UpstreamError saying how it failed.

        ``timeout`` (default: the upstream timeout) is how long to wait for the answer.

        A kept-alive connection that the backend had already closed is replaced by a new one
        (once) when nothing came back on it and the request is safe to send again.
        """
        raw = self._head(method, target, headers, body) + body
        timeout = self._timeout if timeout is None else timeout
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since > IDLE_LIMIT_SECONDS or not conn.usable():
                conn.discard()
                continue
            try:
                response = await self._exchange(conn, raw, method, timeout)
            except UpstreamError as exc:
                stale = exc.failure is Failure.BROKEN and not conn.received_any and not conn.aborted
                if stale and idempotent:
                    self.close()  # its siblings are likely stale too
                    break
                raise
            self._release(conn)
            return response
        conn = await self._connect()
        response = await self._exchange(conn, raw, method, timeout)
        self._release(conn)
        return response

    async def _exchange(self, conn: _Connection, raw: bytes, method: str, timeout: float) -> UpstreamResponse:
        self._active.add(conn)
        try:
            return await conn.exchange(raw, method == "HEAD", timeout)
        finally:
            self._active.discard(conn)

    def abort_in_flight(self) -> int:
        """Cut every request waiting on this backend (it was marked down); return how many.

        A paused backend keeps its connections open and never answers: without this, its
        requests would wait for the full timeout before they could go elsewhere.
        """
        active = list(self._active)
        for conn in active:
            conn.aborted = True
            conn.discard(abort=True)  # its waiter fails when the connection is lost
        self.close()
        return len(active)

    def _release(self, conn: _Connection) -> None:
        if conn.spent() or len(self._idle) >= MAX_IDLE:
            conn.discard()
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)

    def close(self) -> None:
        """Close every idle connection."""
        for conn in self._idle:
            conn.discard()
        self._idle.clear()
