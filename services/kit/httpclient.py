"""A small pooled HTTP/1.1 client for service-to-service calls.

Keep-alive ``http.client`` connections cost about half the CPU of urllib3 and a fifth of
``requests.Session`` per call on these machines (see docs/benchmarks.md), and every
``/data`` request makes two internal calls, so the kit keeps its own thin pool.

A pooled connection carries a request only when nothing waits unread on it: bytes a server
sent after an answer would otherwise be read as the answer to the next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import queue
import socket
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .pool import IDEMPOTENT_METHODS, Failure

__all__ = ["HttpClient", "Response", "UpstreamError"]

# Close pooled connections idle this long: the services keep idle connections for 60 s or
# more (kit/server.py), so the client always gives up first and never sends on a socket the
# server is about to drop.
IDLE_LIMIT_SECONDS = 20.0
# FIONREAD's answer (an int) when no byte waits on a socket.
_NO_BYTES = bytes(4)


def _has_unread_bytes(sock: socket.socket) -> bool:
    """Return whether bytes wait unread on ``sock``, which on an idle connection nobody asked for.

    (Bytes a server sent past an answer that http.client had already buffered go away with that
    answer's reader.) One ioctl: a peeking recv needs the socket made non-blocking and back (three
    system calls), and gevent's select.poll returns at once for a zero timeout without looking.
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
        self._idle: queue.LifoQueue[tuple[http.client.HTTPConnection, float]] = queue.LifoQueue(max_idle)
        self._lock = threading.Lock()
        self._active: set[http.client.HTTPConnection] = set()
        self._aborted: set[http.client.HTTPConnection] = set()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamError(self.base_url, Failure.CONNECT, str(exc) or type(exc).__name__) from exc
        conn.sock.settimeout(timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _checkout(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        now = time.monotonic()
        while True:
            try:
                conn, idle_since = self._idle.get_nowait()
            except queue.Empty:
                return self._connect(timeout), False
            if now - idle_since < IDLE_LIMIT_SECONDS and conn.sock is not None and not _has_unread_bytes(conn.sock):
                conn.sock.settimeout(timeout)
                return conn, True
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        try:
            self._idle.put_nowait((conn, time.monotonic()))
        except queue.Full:
            conn.close()

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
        if idempotent is None:
            idempotent = method.upper() in IDEMPOTENT_METHODS
        send_headers = {"Host": f"{self.host}:{self.port}"}
        if headers:
            send_headers.update(headers)
        for attempt in range(2):
            conn, reused = self._checkout(timeout) if attempt == 0 else (self._connect(timeout), False)
            with self._lock:
                self._active.add(conn)
            try:
                conn.request(method, path, body=body, headers=send_headers)
                raw = conn.getresponse()
                data = raw.read()
            except TimeoutError as exc:
                conn.close()
                raise UpstreamError(self.base_url, Failure.TIMEOUT, f"no answer within {timeout} s") from exc
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if conn in self._aborted:
                    raise UpstreamError(self.base_url, Failure.BROKEN, "cut: the backend was marked down") from exc
                if reused and idempotent:
                    # The server closed it (restarted?): its other idle connections are dead too.
                    self.close()
                    continue
                failure = Failure.CONNECT if isinstance(exc, ConnectionRefusedError) else Failure.BROKEN
                raise UpstreamError(self.base_url, failure, str(exc) or type(exc).__name__) from exc
            finally:
                with self._lock:
                    self._active.discard(conn)
                    self._aborted.discard(conn)
            if raw.status < 200:
                # An interim answer (103 Early Hints ...) that http.client, which skips only 100 Continue,
                # returned as the answer: the real one would then be read by the next request on this connection.
                conn.close()
                raise UpstreamError(self.base_url, Failure.BROKEN, f"answered {raw.status}, an interim answer")
            if raw.will_close:
                conn.close()
            else:
                self._checkin(conn)
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, data)
        raise AssertionError("unreachable: the second attempt uses a new connection")

    def abort_in_flight(self) -> int:
        """Cut every request waiting on this server (it was marked down); return how many.

        A hung server keeps its connections open and never answers: without this, the
        threads waiting on it would wait for the full timeout before failing over.
        """
        with self._lock:
            active = list(self._active)
            self._aborted.update(active)
        for conn in active:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv
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
                conn, _ = self._idle.get_nowait()
            except queue.Empty:
                return
            conn.close()


def _parse_json(response: Response, target: str) -> Any:
    try:
        return response.json() if response.body else None
    except ValueError as exc:
        raise UpstreamError(target, Failure.BROKEN, f"answered {response.status} with a body that is not JSON") from exc
