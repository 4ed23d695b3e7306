"""A small pooled HTTP/1.1 client for service-to-service calls, parsed by httptools.

Every ``/data`` request makes an internal call, so its cost counts twice over. A keep-alive
``http.client`` connection cost about half the CPU of urllib3 and a fifth of ``requests.Session``
per call on these machines; most of what it still spent was ``http.client`` reading the answer's
headers with the ``email`` package. Here the answer is parsed by httptools (llhttp, as in the
balancer's client and uvicorn), which cut a call from about 130 to about 60 µs (docs/benchmarks.md).

A pooled connection carries a request only when nothing waits unread on it: bytes a server
sent after an answer would otherwise be read as the answer to the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import queue
import re
import socket
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from .pool import IDEMPOTENT_METHODS, Failure

__all__ = ["HttpClient", "Response", "UpstreamError"]

# Close pooled connections idle this long: the services keep idle connections for 60 s or
# more (kit/server.py), so the client always gives up first and never sends on a socket the
# server is about to drop.
IDLE_LIMIT_SECONDS = 20.0
# FIONREAD's answer (an int) when no byte waits on a socket.
_NO_BYTES = bytes(4)
RECEIVE_BYTES = 65_536
# Characters a request target or a header may not hold: they would end the line or the request.
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f]")
_BAD_HEADER = re.compile(r"[\x00\r\n]")
# Methods whose requests carry a body, so a missing one is sent as Content-Length: 0.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Answers that carry no body whatever their headers say (RFC 9112 section 6.3); the balancer's client too.
NO_BODY_STATUSES = frozenset({204, 304})
SWITCHING_PROTOCOLS = 101


def _has_unread_bytes(sock: socket.socket) -> bool:
    """Return whether bytes wait unread on ``sock``, which on an idle connection nobody asked for.

    One ioctl: a peeking recv needs the socket made non-blocking and back (three system calls),
    and gevent's select.poll returns at once for a zero timeout without looking.
    """
    try:
        return fcntl.ioctl(sock.fileno(), termios.FIONREAD, _NO_BYTES) != _NO_BYTES
    except OSError:
        return True


class UpstreamError(ConnectionError):
    """A call to another service failed; ``failure`` says how (see :class:`Failure`)."""

    def __init__(self, target: str, failure: Failure, detail: str) -> None:
        super().__init__(f"{target}: {failure.value} failed ({detail})")
        self.target = target
        self.failure = failure


@dataclass
class Response:
    """A buffered response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


class _Unasked(Exception):
    """The server began another answer after the final one; raised to stop the parser there."""


class _Answer:
    """httptools callbacks that gather one answer (after any interim 1xx answers)."""

    __slots__ = ("body", "done", "head_only", "head_read", "headers", "parser", "reusable")

    def __init__(self, head_only: bool) -> None:
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.done = False
        self.head_read = False
        self.head_only = head_only
        self.reusable = True
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        if self.done:
            raise _Unasked  # more than the answer came: it stands, the connection does not

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_read = True
        if self.head_only:  # a HEAD answer has headers only, whatever Content-Length says
            self.reusable = False
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done:
            return
        status = self.parser.get_status_code()
        if status < 200:
            if status < 100 or status == SWITCHING_PROTOCOLS:
                raise httptools.HttpParserError(f"answered with status {status}")
            self.headers, self.body = {}, []  # an interim answer (100, 103): the final one follows
            return
        self.done = True
        self.reusable = self.reusable and self.parser.should_keep_alive()

    def ends_at_close(self) -> bool:
        """Return whether the answer has no framing, so the server's close ends it (HTTP/1.0 style)."""
        if not self.head_read or self.parser.get_status_code() in NO_BODY_STATUSES:
            return False
        return "content-length" not in self.headers and "transfer-encoding" not in self.headers


class _Broken(Exception):
    """The server's bytes were not a readable answer."""


class HttpClient:
    """Keep-alive connections to one base URL, reused across calls, with connect and read timeouts."""

    def __init__(self, base_url: str, timeout: float = 5.0, connect_timeout: float = 1.0, max_idle: int = 64) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected a base URL like http://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._host_header = f"{self.host}:{self.port}"
        self._idle: queue.LifoQueue[tuple[socket.socket, float]] = queue.LifoQueue(max_idle)
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        self._aborted: set[socket.socket] = set()

    def _connect(self, timeout: float) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            raise UpstreamError(self.base_url, Failure.CONNECT, str(exc) or type(exc).__name__) from exc
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _checkout(self, timeout: float) -> tuple[socket.socket, bool]:
        now = time.monotonic()
        while True:
            try:
                sock, idle_since = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(timeout), False
            if now - idle_since < IDLE_LIMIT_SECONDS and not _has_unread_bytes(sock):
                sock.settimeout(timeout)
                return sock, True
            sock.close()

    def _checkin(self, sock: socket.socket) -> None:
        try:
            self._idle.put_nowait((sock, time.monotonic()))
        except queue.Full:
            sock.close()

    def _head(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None) -> bytes:
        """Return the request line and headers, refusing what would break the request's framing."""
        if _BAD_TARGET.search(path) or not path.startswith("/"):
            raise UpstreamError(self.base_url, Failure.BROKEN, f"refused to send the request target {path!r}")
        fields = {"Host": self._host_header}
        if headers:
            fields.update(headers)
        if body is not None or method in _BODY_METHODS:
            fields["Content-Length"] = str(len(body or b""))
        lines = [f"{method} {path} HTTP/1.1"]
        for name, value in fields.items():
            if _BAD_HEADER.search(name) or _BAD_HEADER.search(value) or ":" in name:
                raise ValueError(f"invalid header {name!r}: {value!r}")
            lines.append(f"{name}: {value}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1")

    @staticmethod
    def _exchange(sock: socket.socket, request: bytes, head_only: bool) -> _Answer:
        """Send ``request`` on ``sock`` and read its whole answer; raise OSError or _Broken."""
        sock.sendall(request)
        answer = _Answer(head_only)
        parser = answer.parser
        while not answer.done:
            data = sock.recv(RECEIVE_BYTES)
            if not data:
                if answer.ends_at_close():
                    answer.done, answer.reusable = True, False
                    break
                raise ConnectionResetError("the server closed the connection before a whole answer")
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise _Broken("the server switched protocols (101), which this client never asks for") from None
            except httptools.HttpParserError as exc:
                if not answer.done:
                    raise _Broken(f"unreadable answer: {exc}") from None
                answer.reusable = False  # more came after the answer (see on_message_begin); the answer stands
        return answer

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """Send one request and return the buffered response; raise UpstreamError on failure.

        A reused connection that turns out to be closed is retried once on a new one, for
        idempotent requests only (a POST might already have been processed); ``idempotent``
        overrides what the method says (a POST that stores a value under a key is safe to repeat).
        """
        timeout = self.timeout if timeout is None else timeout
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        head = self._head(method, path, body, headers)
        request = head + body if body else head
        for attempt in range(2):
            sock, reused = self._checkout(timeout) if attempt == 0 else (self._connect(timeout), False)
            with self._lock:
                self._active.add(sock)
            try:
                answer = self._exchange(sock, request, method == "HEAD")
            except TimeoutError as exc:
                sock.close()
                raise UpstreamError(self.base_url, Failure.TIMEOUT, f"no answer within {timeout} s") from exc
            except _Broken as exc:
                sock.close()
                raise UpstreamError(self.base_url, Failure.BROKEN, str(exc)) from exc
            except OSError as exc:
                sock.close()
                if sock in self._aborted:
                    raise UpstreamError(self.base_url, Failure.BROKEN, "cut: the backend was marked down") from exc
                if reused and idempotent:
                    # The server closed it (restarted?): its other idle connections are dead too.
                    self.close()
                    continue
                failure = Failure.CONNECT if isinstance(exc, ConnectionRefusedError) else Failure.BROKEN
                raise UpstreamError(self.base_url, failure, str(exc) or type(exc).__name__) from exc
            finally:
                with self._lock:
                    self._active.discard(sock)
                    self._aborted.discard(sock)
            if answer.reusable:
                self._checkin(sock)
            else:
                sock.close()
            return Response(answer.parser.get_status_code(), answer.headers, b"".join(answer.body))
        raise AssertionError("unreachable: the second attempt uses a new connection")

    def abort_in_flight(self) -> int:
        """Cut every request waiting on this server (it was marked down); return how many.

        A hung server keeps its connections open and never answers: without this, the
        threads waiting on it would wait for the full timeout before failing over.
        """
        with self._lock:
            active = list(self._active)
            self._aborted.update(active)
        for sock in active:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv
        self.close()
        return len(active)

    def get_json(self, path: str, timeout: float | None = None) -> tuple[int, Any]:
        """GET ``path`` and return ``(status, parsed JSON body)``."""
        response = self.request("GET", path, timeout=timeout)
        return response.status, _parse_json(response, self.base_url)

    def send_json(
        self,
        method: str,
        path: str,
        payload: Any,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> tuple[int, Any]:
        """Send ``payload`` as JSON and return ``(status, parsed JSON body)``."""
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
        response = self.request(method, path, body, headers, timeout, idempotent)
        return response.status, _parse_json(response, self.base_url)

    def close(self) -> None:
        """Close every idle connection."""
        while True:
            try:
                sock, _ = self._idle.get_nowait()
            except queue.Empty:
                return
            sock.close()


def _parse_json(response: Response, target: str) -> Any:
    try:
        return response.json() if response.body else None
    except ValueError as exc:
        raise UpstreamError(target, Failure.BROKEN, f"answered {response.status} with a body that is not JSON") from exc
