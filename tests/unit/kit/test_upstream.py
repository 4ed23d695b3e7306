"""The kit's asyncio upstream pool, against raw asyncio servers on 127.0.0.1 that the tests control byte by byte."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass

import pytest

from services.kit.pool import Failure
from services.kit.upstream import Upstream, UpstreamError, UpstreamResponse


@dataclass
class Seen:
    """One request as the server read it off the socket."""

    connection: int  # 1 for the first connection the server accepted, and so on
    index: int  # 0 for the first request on its connection
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    """What the server does with a request: send ``data``, then maybe close; or hang; or just drop the socket.

    ``later`` is sent in a write of its own LATER_SECONDS after ``data``: bytes nobody asked for, as a
    misbehaving gateway sends them. ``delay`` holds ``data`` back that many seconds.
    """

    data: bytes = b""
    close: bool = False
    hang: bool = False
    later: bytes = b""
    delay: float = 0.0


DROP = Reply(close=True)  # close without a byte of answer
HANG = Reply(hang=True)  # never answer; wait for the client to give up
LATER_SECONDS = 0.01  # long enough for the client to read the answer alone
LOOPBACK_SECONDS = 0.02  # far more than loopback takes to deliver a write


def reply(status: int = 200, body: bytes = b"", headers: tuple[str, ...] = (), close: bool = False) -> Reply:
    """Return an HTTP/1.1 answer with a Content-Length (unless ``headers`` sets the framing itself)."""
    lines = [f"HTTP/1.1 {status} X", *headers]
    if not any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return Reply("\r\n".join([*lines, "", ""]).encode("latin-1") + body, close=close)


async def read_request(reader: asyncio.StreamReader, connection: int, index: int) -> Seen | None:
    """Read one request (head and Content-Length body); None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _version = request_line.split(" ")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Seen(connection, index, method, target, headers, body)


def listening_socket() -> socket.socket:
    """Return a socket bound to 127.0.0.1 and a port the OS chose (the server calls listen())."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def stop_accepting(sock: socket.socket) -> None:
    """Stop accepting on ``sock`` and let connections already accepted reach their server.

    Closing an asyncio server while an accepted connection is still on its way to it (one
    event-loop turn) makes Python 3.11 drop that half-made transport unclosed: a ResourceWarning.
    The balancer's health checks connect from other threads at any moment, so first stop
    watching the socket, then let a few loop turns pass (turns, not seconds: no timing guess).
    """
    asyncio.get_running_loop().remove_reader(sock.fileno())
    for _ in range(3):
        await asyncio.sleep(0)


class RawServer:
    """An HTTP/1.1-ish server on 127.0.0.1 and an OS-chosen port; ``answer`` decides each reply."""

    def __init__(self, answer: Callable[[Seen], Reply]) -> None:
        self.answer = answer
        self.connections = 0  # accepted so far
        self.later_sent = 0  # Reply.later writes done
        self.finished = 0  # connections the server has closed
        self.requests: list[Seen] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        # Each open connection's writer and the targets it has answered so far.
        self.open: dict[asyncio.StreamWriter, list[str]] = {}

    async def __aenter__(self) -> RawServer:
        self._sock = listening_socket()
        self._server = await asyncio.start_server(self._serve, sock=self._sock)
        self.port = self._sock.getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        await stop_accepting(self._sock)
        self._server.close()
        await self._server.wait_closed()
        self._sock.close()

    def upstream(self, timeout: float = 2.0) -> Upstream:
        return Upstream("127.0.0.1", self.port, connect_timeout=1.0, timeout=timeout)

    def poke(self, data: bytes, skip: str = "/health") -> set[asyncio.StreamWriter]:
        """Send ``data`` now (no await: it is in the client's socket before its loop runs again) on every open
        connection that has answered a request and whose last one was not ``skip``; return those connections.
        """
        poked = {writer for writer, targets in self.open.items() if targets and targets[-1] != skip}
        for writer in poked:
            writer.write(data)
        return poked

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        self.open[writer] = targets = []
        try:
            index = 0
            while (request := await read_request(reader, connection, index)) is not None:
                index += 1
                self.requests.append(request)
                action = self.answer(request)
                if action.hang:
                    await reader.read()  # until the client closes its end
                    break
                if action.delay:
                    await asyncio.sleep(action.delay)
                writer.write(action.data)
                await writer.drain()
                targets.append(request.target)
                if action.later:
                    await asyncio.sleep(LATER_SECONDS)
                    writer.write(action.later)
                    await writer.drain()
                    self.later_sent += 1
                if action.close:
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            del self.open[writer]
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()
            self.finished += 1


async def until(condition: Callable[[], object], timeout: float = 3.0, what: str = "condition") -> None:
    """Poll ``condition`` (letting the event loop run) until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.002)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def header(response: UpstreamResponse, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key.lower() == name.lower()), None)


def ok(request: Seen) -> Reply:
    return reply(200, f"{request.method} {request.target}".encode(), ("X-Test: yes",))


async def get(upstream: Upstream, target: str = "/") -> UpstreamResponse:
    return await upstream.request("GET", target, [], b"", idempotent=True)


async def post(upstream: Upstream, target: str = "/", body: bytes = b"{}") -> UpstreamResponse:
    return await upstream.request("POST", target, [(b"Content-Type", b"application/json")], body, idempotent=False)


def closed_port() -> int:
    """Return a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ answers


def test_a_get_returns_status_headers_and_body_and_the_connection_is_reused():
    async def scenario():
        async with RawServer(ok) as server:
            upstream = server.upstream()
            first = await get(upstream, "/one")
            assert first.status == 200
            assert header(first, b"x-test") == b"yes"
            assert first.body == b"GET /one"
            second = await get(upstream, "/two")
            assert (second.status, second.body) == (200, b"GET /two")
            assert server.connections == 1
            assert [r.connection for r in server.requests] == [1, 1]
            upstream.close()

    run(scenario)


def test_the_status_is_passed_through():
    async def scenario():
        async with RawServer(lambda request: reply(503, b'{"error": "busy"}')) as server:
            upstream = server.upstream()
            response = await get(upstream)
            assert (response.status, response.body) == (503, b'{"error": "busy"}')
            assert (await get(upstream)).status == 503
            assert server.connections == 1
            upstream.close()

    run(scenario)


def test_a_chunked_answer_is_read_whole():
    chunked = reply(
        200,
        b"5\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\n\r\n",
        ("Transfer-Encoding: chunked",),
    )

    async def scenario():
        async with RawServer(lambda request: chunked) as server:
            upstream = server.upstream()
            assert (await get(upstream)).body == b"hello, world"
            assert (await get(upstream)).body == b"hello, world"
            assert server.connections == 1  # the connection stays usable after the last chunk
            upstream.close()

    run(scenario)


def test_a_body_larger_than_a_megabyte_is_read_whole():
    big = bytes(range(256)) * (3 * 4096 + 7)  # about 3 MB, arriving in many reads

    async def scenario():
        async with RawServer(lambda request: reply(200, big)) as server:
            upstream = server.upstream()
            response = await get(upstream)
            assert len(response.body) == len(big)
            assert response.body == big
            assert (await get(upstream)).body == big
            assert server.connections == 1
            upstream.close()

    run(scenario)


def test_head_with_a_content_length_and_no_body_completes():
    def answer(request: Seen) -> Reply:
        if request.method == "HEAD":
            return Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nX-Test: head\r\n\r\n")
        return ok(request)

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream(timeout=2.0)  # a hang would surface as TIMEOUT
            response = await upstream.request("HEAD", "/", [], b"", idempotent=True)
            assert response.status == 200
            assert header(response, b"content-length") == b"12345"
            assert header(response, b"x-test") == b"head"
            assert response.body == b""
            # whatever became of that connection, the next request works
            assert (await get(upstream, "/after")).body == b"GET /after"
            assert [r.method for r in server.requests] == ["HEAD", "GET"]
            upstream.close()

    run(scenario)


def test_interim_answers_are_skipped_for_the_final_one():
    # A gateway answers "Expect: 100-continue" with 100 Continue before its real answer; 103 may come unasked.
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </app.css>\r\n\r\n"
    final = reply(201, b"created", ("X-Test: final",))

    async def scenario():
        async with RawServer(lambda request: Reply(interim + final.data)) as server:
            upstream = server.upstream()
            expect = [(b"Expect", b"100-continue")]
            for _ in range(2):
                response = await upstream.request("POST", "/orders", expect, b'{"n": 1}', idempotent=False)
                assert (response.status, response.body) == (201, b"created")
                assert header(response, b"x-test") == b"final"
                assert header(response, b"link") is None  # the interim answer's headers are not the answer's
            assert server.connections == 1
            upstream.close()

    run(scenario)


# ------------------------------------------------------------------ closed connections


def test_connection_close_from_the_server_means_a_new_connection_next_time():
    async def scenario():
        answer = lambda request: reply(200, b"bye", ("Connection: close",), close=True)  # noqa: E731
        async with RawServer(answer) as server:
            upstream = server.upstream()
            assert (await get(upstream)).body == b"bye"
            assert (await get(upstream)).body == b"bye"
            assert server.connections == 2
            assert [r.connection for r in server.requests] == [1, 2]  # nothing was sent on the closed one
            upstream.close()

    run(scenario)


def test_a_get_on_a_connection_the_server_closed_while_idle_goes_out_on_a_new_one():
    async def scenario():
        # The server answers, then closes the kept-alive connection without saying so.
        async with RawServer(lambda request: reply(200, b"ok", close=True)) as server:
            upstream = server.upstream()
            assert (await get(upstream)).body == b"ok"
            await until(lambda: server.finished == 1, what="the server to close the idle connection")
            assert (await get(upstream)).body == b"ok"
            assert server.connections == 2
            upstream.close()

    run(scenario)


def stale(request: Seen) -> Reply:
    """Answer the first request of each connection; drop the connection when a second one arrives on it.

    That is the race a keep-alive pool loses: the server closes an idle connection just as the
    client sends on it, so the connection dies before any byte of answer.
    """
    return reply(200, request.method.encode()) if request.index == 0 else DROP


def test_an_idempotent_request_that_races_an_idle_close_is_sent_again_on_a_new_connection():
    async def scenario():
        async with RawServer(stale) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/first")).body == b"GET"
            second = await get(upstream, "/second")
            assert (second.status, second.body) == (200, b"GET")
            assert server.connections == 2
            assert [(r.connection, r.target) for r in server.requests] == [
                (1, "/first"),
                (1, "/second"),
                (2, "/second"),
            ]
            upstream.close()

    run(scenario)


def test_a_post_that_races_an_idle_close_fails_broken_and_is_not_sent_again():
    async def scenario():
        async with RawServer(stale) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/first")).body == b"GET"
            with pytest.raises(UpstreamError) as info:
                await post(upstream, "/orders", b'{"n": 1}')
            assert info.value.failure is Failure.BROKEN
            posts = [r for r in server.requests if r.method == "POST"]
            assert len(posts) <= 1
            assert server.connections == 1  # no second connection was opened for it
            # the pool recovers: the next request goes out on a fresh connection
            assert (await get(upstream, "/after")).body == b"GET"
            assert server.connections == 2
            upstream.close()

    run(scenario)


def test_a_post_on_a_connection_dropped_mid_request_fails_broken():
    async def scenario():
        async with RawServer(lambda request: DROP) as server:
            upstream = server.upstream()
            with pytest.raises(UpstreamError) as info:
                await post(upstream)
            assert info.value.failure is Failure.BROKEN
            assert len(server.requests) == 1

    run(scenario)


# ------------------------------------------------------------------ failures


def test_connection_refused_is_a_connect_failure():
    async def scenario():
        upstream = Upstream("127.0.0.1", closed_port(), connect_timeout=1.0, timeout=1.0)
        with pytest.raises(UpstreamError) as info:
            await get(upstream)
        assert info.value.failure is Failure.CONNECT
        with pytest.raises(UpstreamError) as info:
            await post(upstream)
        assert info.value.failure is Failure.CONNECT

    run(scenario)


def test_a_server_that_never_answers_is_a_timeout_within_the_configured_time():
    async def scenario():
        async with RawServer(lambda request: HANG) as server:
            upstream = server.upstream(timeout=0.3)
            started = time.monotonic()
            with pytest.raises(UpstreamError) as info:
                await get(upstream)
            elapsed = time.monotonic() - started
            assert info.value.failure is Failure.TIMEOUT
            assert 0.25 <= elapsed < 1.5
            await until(lambda: server.finished == 1, what="the client to close the timed-out connection")
            assert len(server.requests) == 1  # a timed-out request is not sent again

    run(scenario)


@pytest.mark.parametrize(
    "garbage",
    [b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 abc Nope\r\n\r\n", b"\x00\x01\x02\x03 binary junk\r\n\r\n"],
    ids=["not-http", "bad-status", "binary"],
)
def test_garbage_instead_of_http_is_a_broken_failure(garbage):
    async def scenario():
        async with RawServer(lambda request: Reply(garbage)) as server:
            upstream = server.upstream(timeout=2.0)
            with pytest.raises(UpstreamError) as info:
                await get(upstream)
            assert info.value.failure is Failure.BROKEN
            await until(lambda: server.finished == 1, what="the client to close the broken connection")

    run(scenario)


def test_an_answer_cut_short_is_a_broken_failure():
    async def scenario():
        truncated = Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", close=True)
        async with RawServer(lambda request: truncated) as server:
            with pytest.raises(UpstreamError) as info:
                await get(server.upstream())
            assert info.value.failure is Failure.BROKEN

    run(scenario)


# ------------------------------------------------------------------ what goes on the wire


def test_the_request_the_server_receives():
    async def scenario():
        async with RawServer(ok) as server:
            upstream = server.upstream()
            target = "/api/items%2F7?q=a%20b%26c&next=%E2%9C%93"
            headers = [(b"Content-Type", b"application/json"), (b"X-Forwarded-For", b"10.1.2.3")]
            await upstream.request("POST", target, headers, b'{"name": "x"}', idempotent=False)
            await get(upstream, "/plain")
            await upstream.request("PUT", "/empty", [], b"", idempotent=True)
            upstream.close()

        posted, got, put = server.requests
        assert (posted.method, posted.target) == ("POST", target)
        assert posted.headers["host"] == f"127.0.0.1:{server.port}"
        assert posted.headers["content-length"] == "13"
        assert posted.headers["content-type"] == "application/json"
        assert posted.headers["x-forwarded-for"] == "10.1.2.3"
        assert posted.body == b'{"name": "x"}'
        assert (got.method, got.target, got.body) == ("GET", "/plain", b"")
        assert got.headers["host"] == f"127.0.0.1:{server.port}"
        assert "content-length" not in got.headers
        assert put.headers["content-length"] == "0"  # a PUT says it has no body rather than leave it open

    run(scenario)


# ------------------------------------------------------------------ bytes nobody asked for

STALE = reply(200, b"STALE", ("X-Stale: yes",)).data  # an answer that belongs to no request
EXTRAS = {
    "a-second-answer": STALE,
    "garbage": b"garbage\r\n\r\n",
    "half-an-answer": b"HTTP/1.1 200 X\r\nContent-Length: 100\r\n\r\nSTA",
    "an-interim-answer": b"HTTP/1.1 100 Continue\r\n\r\n",
}


def on_own_connections(server: RawServer) -> list[int]:
    """Return the connection each request came on (1 for the first the server accepted, ...)."""
    return [r.connection for r in server.requests]


@pytest.mark.parametrize("extra", EXTRAS.values(), ids=EXTRAS.keys())
@pytest.mark.parametrize("when", ["with-the-answer", "after-the-answer"])
def test_bytes_after_a_complete_answer_close_the_connection(extra, when):
    def answer(request: Seen) -> Reply:
        data = ok(request).data
        return Reply(data + extra) if when == "with-the-answer" else Reply(data, later=extra)

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream()
            first = await get(upstream, "/one")
            assert (first.status, first.body) == (200, b"GET /one")
            assert header(first, b"x-stale") is None  # the extra answer's headers are not this one's
            await until(lambda: server.later_sent == (when == "after-the-answer"), what="the extra bytes")
            # A POST cannot be sent again: it must get its own answer on the first try.
            second = await post(upstream, "/two")
            assert (second.status, second.body) == (200, b"POST /two")
            assert header(second, b"x-stale") is None
            assert on_own_connections(server) == [1, 2]
            upstream.close()

    run(scenario)


IDLE_JUNK = {
    "an-answer": STALE,
    "an-interim-answer": b"HTTP/1.1 100 Continue\r\n\r\n",
    "a-lone-crlf": b"\r\n",
    "garbage": b"\x00junk",
}


@pytest.mark.parametrize("junk", IDLE_JUNK.values(), ids=IDLE_JUNK.keys())
def test_bytes_in_an_idle_connections_socket_are_never_read_as_the_next_answer(junk):
    async def scenario():
        async with RawServer(ok) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/one")).body == b"GET /one"
            assert server.poke(junk)
            # No await in between: the bytes reach the socket, but the event loop does not read them; the
            # blocking sleep only gives loopback time to deliver them.
            time.sleep(LOOPBACK_SECONDS)
            second = await post(upstream, "/two")
            assert (second.status, second.body) == (200, b"POST /two")
            assert on_own_connections(server) == [1, 2]
            upstream.close()

    run(scenario)


def test_an_idle_connection_that_receives_bytes_is_closed_at_once():
    async def scenario():
        async with RawServer(ok) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/one")).body == b"GET /one"
            poked = server.poke(STALE)
            await until(lambda: not poked & server.open.keys(), what="the client to close the poked connection")
            assert (await post(upstream, "/two")).body == b"POST /two"
            assert on_own_connections(server) == [1, 2]
            upstream.close()

    run(scenario)


HTTP_10 = {
    "with-a-length": b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s",
    "with-connection-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
}


@pytest.mark.parametrize("head", HTTP_10.values(), ids=HTTP_10.keys())
def test_an_answer_without_keep_alive_ends_the_connection_even_if_the_server_keeps_it_open(head):
    def answer(request: Seen) -> Reply:
        body = f"{request.method} {request.target}".encode()
        return Reply(head % (len(body), body))  # and the server keeps the connection open

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/one")).body == b"GET /one"
            server.poke(STALE)  # anything it might send there later
            assert (await post(upstream, "/two")).body == b"POST /two"
            assert (await get(upstream, "/three")).body == b"GET /three"
            assert on_own_connections(server) == [1, 2, 3]
            upstream.close()

    run(scenario)


def test_an_http_1_0_answer_with_keep_alive_keeps_the_connection():
    def answer(request: Seen) -> Reply:
        body = f"{request.method} {request.target}".encode()
        return Reply(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/one")).body == b"GET /one"
            assert (await get(upstream, "/two")).body == b"GET /two"
            assert on_own_connections(server) == [1, 1]
            upstream.close()

    run(scenario)


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_an_answer_without_framing_ends_when_the_server_closes(version):
    def answer(request: Seen) -> Reply:
        return Reply(
            f"HTTP/{version} 200 OK\r\nX-Test: eof\r\n\r\n{request.method} {request.target}".encode(), close=True
        )

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream()
            first = await get(upstream, "/one")
            assert (first.status, first.body) == (200, b"GET /one")
            assert header(first, b"x-test") == b"eof"
            assert (await post(upstream, "/two")).body == b"POST /two"
            assert on_own_connections(server) == [1, 2]

    run(scenario)


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade", b"HTTP/1.1 099 X"],
    ids=["101", "099"],
)
def test_an_answer_that_cannot_be_the_final_one_is_a_broken_failure(status_line):
    async def scenario():
        def answer(request: Seen) -> Reply:
            if request.target == "/bad":
                return Reply(status_line + b"\r\nContent-Length: 0\r\n\r\n")
            return ok(request)

        async with RawServer(answer) as server:
            upstream = server.upstream(timeout=2.0)  # a hang would surface as TIMEOUT
            with pytest.raises(UpstreamError) as info:
                await upstream.request("POST", "/bad", [], b"{}", idempotent=False)
            assert info.value.failure is Failure.BROKEN
            assert (await get(upstream, "/after")).body == b"GET /after"
            assert on_own_connections(server) == [1, 2]
            upstream.close()

    run(scenario)


def test_an_answer_to_a_cancelled_request_goes_to_no_other_request():
    def answer(request: Seen) -> Reply:
        return Reply(ok(request).data, delay=0.05 if request.target == "/slow" else 0.0)

    async def scenario():
        async with RawServer(answer) as server:
            upstream = server.upstream()
            assert (await get(upstream, "/warm")).body == b"GET /warm"
            slow = asyncio.create_task(get(upstream, "/slow"))
            await until(lambda: len(server.requests) == 2, what="the slow request to reach the server")
            slow.cancel()
            with suppress(asyncio.CancelledError):
                await slow
            for target in ("/next", "/after"):  # the slow answer arrives meanwhile, on a connection now closed
                assert (await get(upstream, target)).body == f"GET {target}".encode()
                await asyncio.sleep(0.05)
            assert [r.connection for r in server.requests] == [1, 1, 2, 2]
            upstream.close()

    run(scenario)


class EarlyAnswerServer:
    """Answer 413 as soon as a request's head arrives, without reading its body (as a server refusing a big upload)."""

    def __init__(self) -> None:
        self.connections = 0
        self.heads: list[tuple[int, bytes]] = []

    async def __aenter__(self) -> EarlyAnswerServer:
        self._sock = listening_socket()
        self._server = await asyncio.start_server(self._serve, sock=self._sock)
        self.port = self._sock.getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await stop_accepting(self._sock)
        self._server.close()
        await self._server.wait_closed()
        self._sock.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append((connection, head.split(b"\r\n", 1)[0]))
            if head.startswith(b"POST"):
                writer.write(reply(413, b"too big").data)
                await writer.drain()
                await reader.read()  # never reads a body: sits until the client goes
            else:
                writer.write(reply(200, b"fine").data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with suppress(ConnectionError):
                await writer.wait_closed()


def test_a_connection_whose_request_was_answered_before_it_was_all_sent_is_not_reused():
    async def scenario():
        async with EarlyAnswerServer() as server:
            upstream = Upstream("127.0.0.1", server.port, connect_timeout=1.0, timeout=2.0)
            # A body far larger than the sockets' buffers: most of it is still unsent when the 413 arrives.
            answer = await upstream.request("POST", "/upload", [], b"x" * (32 * 1024 * 1024), idempotent=False)
            assert (answer.status, answer.body) == (413, b"too big")
            second = await get(upstream, "/next")
            assert (second.status, second.body) == (200, b"fine")
            assert server.heads == [(1, b"POST /upload HTTP/1.1"), (2, b"GET /next HTTP/1.1")]
            upstream.close()

    run(scenario)
