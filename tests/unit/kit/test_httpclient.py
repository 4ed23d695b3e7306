"""The kit's pooled HTTP client against a raw server on 127.0.0.1 that sends what the test says, byte by byte."""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from services.kit.httpclient import HttpClient, UpstreamError
from services.kit.pool import Failure
from tests.unit.support import InThread

LOOPBACK_SECONDS = 0.02  # far more than loopback takes to deliver a write
STALE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Stale: yes\r\n\r\nSTALE"  # an answer that belongs to no request


def answer_to(method: str, target: str, head: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """Return an answer whose body names the request it answers."""
    body = f"{method} {target}".encode()
    return head + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class RawServer(InThread):
    """Answer each request with the bytes ``answer(method, target)`` returns; record which connection it came on."""

    def __init__(self, answer: Callable[[str, str], bytes] = answer_to) -> None:
        self.requests: list[tuple[int, str, str]] = []
        self.connections = 0
        self.open: dict[int, socketserver.StreamRequestHandler] = {}  # by connection number, once it has answered
        self.lock = threading.Lock()
        raw = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with raw.lock:
                    raw.connections += 1
                    number = raw.connections
                try:
                    while request_line := self.rfile.readline():
                        length = 0
                        while (line := self.rfile.readline()) not in (b"\r\n", b""):
                            name, _, value = line.decode("latin-1").partition(":")
                            if name.strip().lower() == "content-length":
                                length = int(value)
                        self.rfile.read(length)
                        method, target, _ = request_line.decode("latin-1").split(" ")
                        raw.requests.append((number, method, target))
                        raw.open[number] = self
                        self.wfile.write(answer(method, target))
                except (ConnectionError, ValueError):
                    pass
                finally:
                    raw.open.pop(number, None)

            def finish(self) -> None:
                with contextlib.suppress(ConnectionError):  # the client may be gone (it closes spent connections)
                    super().finish()

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        super().__init__(server)

    def poke(self, data: bytes) -> int:
        """Send ``data`` on every connection that has answered a request; return how many.

        A connection the client has just closed may still be listed: writing to it fails, as it may.
        """
        handlers = list(self.open.values())
        for handler in handlers:
            with contextlib.suppress(ConnectionError):
                handler.wfile.write(data)
        return len(handlers)

    def connection_of(self) -> list[int]:
        return [number for number, _, _ in self.requests]


@pytest.fixture
def raw() -> Iterator[Callable[..., tuple[RawServer, HttpClient]]]:
    """Start raw servers, each with a client of its own; close the clients and stop the servers afterwards."""
    started: list[tuple[RawServer, HttpClient]] = []

    def start(answer: Callable[[str, str], bytes] = answer_to) -> tuple[RawServer, HttpClient]:
        server = RawServer(answer)
        started.append((server, HttpClient(server.url)))
        return started[-1]

    yield start
    for server, client in started:
        client.close()
        server.stop()


def test_a_connection_is_reused_while_the_server_behaves(raw):
    server, client = raw()
    for target in ("/one", "/two", "/three"):
        assert client.request("GET", target).body == f"GET {target}".encode()
    assert server.connection_of() == [1, 1, 1]


@pytest.mark.parametrize("junk", [STALE, b"HTTP/1.1 100 Continue\r\n\r\n", b"\r\n", b"garbage"], ids=repr)
def test_bytes_that_reach_an_idle_connection_are_never_read_as_the_next_answer(raw, junk):
    server, client = raw()
    assert client.request("GET", "/one").body == b"GET /one"
    assert server.poke(junk) == 1
    time.sleep(LOOPBACK_SECONDS)  # nothing reads the client's socket meanwhile: the bytes wait there
    for method, target in (("POST", "/two"), ("GET", "/three")):
        response = client.request(method, target, b"{}")
        assert (response.status, response.body) == (200, f"{method} {target}".encode())
        assert "x-stale" not in response.headers
    assert server.connection_of() == [1, 2, 2]


def test_interim_answers_are_skipped_and_the_final_one_is_the_answer(raw):
    def answer(method: str, target: str) -> bytes:
        final = answer_to(method, target)
        interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </app.css>\r\n\r\n"
        return interim + final if target == "/hinted" else final

    server, client = raw(answer)
    response = client.request("POST", "/hinted", b"{}")
    assert (response.status, response.body) == (200, b"POST /hinted")
    assert "link" not in response.headers  # the interim answer's headers are not the answer's
    assert client.request("GET", "/next").body == b"GET /next"
    assert server.connection_of() == [1, 1]


@pytest.mark.parametrize(
    "head", [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket", b"NOT HTTP AT ALL"], ids=["101", "garbage"]
)
def test_an_answer_that_is_no_http_answer_fails_as_broken_and_the_connection_is_dropped(raw, head):
    server, client = raw(lambda method, target: head + b"\r\n\r\n" if target == "/odd" else answer_to(method, target))
    with pytest.raises(UpstreamError) as info:
        client.request("GET", "/odd")
    assert info.value.failure is Failure.BROKEN
    assert client.request("GET", "/next").body == b"GET /next"
    assert server.connection_of() == [1, 2]


@pytest.mark.parametrize("target", ["/a b", "/a\r\nX-Injected: 1", "no-slash"])
def test_a_request_target_that_would_break_the_request_line_is_never_sent(raw, target):
    server, client = raw()
    with pytest.raises(UpstreamError) as info:
        client.request("GET", target)
    assert info.value.failure is Failure.BROKEN
    assert server.requests == []


def test_a_header_value_with_a_line_break_is_refused(raw):
    server, client = raw()
    with pytest.raises(ValueError):
        client.request("GET", "/x", headers={"X-Request-Deadline": "1\r\nX-Injected: 1"})
    assert server.requests == []


def test_the_body_of_an_answer_split_over_many_writes_is_read_whole(raw):
    body = b"x" * 200_000
    server, client = raw(lambda method, target: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    assert client.request("GET", "/big").body == body
    assert client.request("GET", "/again").body == body
    assert server.connection_of() == [1, 1]


def test_an_http_1_0_answer_without_keep_alive_is_not_reused(raw):
    server, client = raw(lambda method, target: answer_to(method, target, b"HTTP/1.0 200 OK"))  # and keeps it open
    for target in ("/one", "/two"):
        assert client.request("GET", target).body == f"GET {target}".encode()
        server.poke(STALE)
    assert server.connection_of() == [1, 2]
