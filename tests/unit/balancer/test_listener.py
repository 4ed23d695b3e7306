"""The balancer's listener on 127.0.0.1: how it reads requests off a connection and writes the answers."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any

import pytest

from services.balancer.listener import OwnRoutes
from services.kit import listener as kit_listener

from .test_app import SEEN, Lab, json_error, run, two_backends


async def connect(lab: Lab) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection to the balancer."""
    assert lab.balancer is not None
    return await asyncio.open_connection("127.0.0.1", int(lab.balancer.url.rsplit(":", 1)[1]))


async def exchange(lab: Lab, data: bytes, answers: int = 1, timeout: float = 5.0) -> list[tuple[bytes, bytes]]:
    """Send ``data`` on one connection; return each answer's head and body, reading until the server closes it
    or ``answers`` answers have come."""
    reader, writer = await connect(lab)
    got: list[tuple[bytes, bytes]] = []
    try:
        writer.write(data)
        await writer.drain()
        while len(got) < answers:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            except asyncio.IncompleteReadError:
                break
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            body = await reader.readexactly(length) if length and not head.startswith(b"HTTP/1.1 100") else b""
            got.append((head, body))
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    return got


def status(answer: tuple[bytes, bytes]) -> int:
    return int(answer[0].split(b" ")[1])


def body(answer: tuple[bytes, bytes]) -> Any:
    return json.loads(answer[1])


def test_pipelined_requests_are_answered_in_order_on_one_connection():
    async def scenario(lab: Lab):
        await two_backends(lab)
        requests = b"".join(b"GET /item/%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % n for n in range(5))
        answers = await exchange(lab, requests, answers=5)
        assert [body(a)["path"] for a in answers] == [f"/item/{n}" for n in range(5)]
        assert [body(a)["backend"] for a in answers] == ["b1", "b2", "b1", "b2", "b1"]

    run(scenario)


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # TLS to a plain HTTP port
        (b"GET /" + b"a" * 40_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414),
        (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"b" * 40_000 + b"\r\n\r\n", 431),
        (b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    ],
)
def test_a_request_that_cannot_be_served_gets_a_json_error_and_the_connection_closes(request_bytes, expected):
    async def scenario(lab: Lab):
        await two_backends(lab)
        answers = await exchange(lab, request_bytes + b"GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", answers=2)
        assert len(answers) == 1, answers  # nothing after it is read
        assert status(answers[0]) == expected
        assert b"application/json" in answers[0][0]
        assert b"Connection: close" in answers[0][0]
        assert body(answers[0])["status"] == expected
        assert body(answers[0])["error"]
        assert lab.backends["b1"].app[SEEN] == lab.backends["b2"].app[SEEN] == []  # no gateway saw any of it

    run(scenario)


def test_headers_of_the_clients_connection_stop_at_the_balancer():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        sent = {"X-Forwarded-For": "6.6.6.6", "TE": "trailers", "Proxy-Authorization": "Basic eA==", "X-Custom": "kept"}
        async with client.get("/who", headers=sent) as response:
            answer = await response.json()
        assert answer["forwarded_for"] == "127.0.0.1"  # the balancer's own, not the client's claim
        assert answer["custom"] == "kept"
        assert answer["hop_by_hop"] == []

    run(scenario)


def test_http_1_0_keeps_the_connection_only_when_asked():
    async def scenario(lab: Lab):
        await two_backends(lab)
        kept = b"GET /a HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
        answers = await exchange(lab, kept + b"GET /b HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" + kept, answers=3)
        assert [body(a)["path"] for a in answers] == ["/a", "/b"]  # /b closed the connection
        assert b"Connection: keep-alive" in answers[0][0]
        assert b"Connection: close" in answers[1][0]

    run(scenario)


def test_a_head_request_gets_the_gateways_length_and_no_body():
    async def scenario(lab: Lab):
        await two_backends(lab)
        reader, writer = await connect(lab)
        writer.write(b"HEAD /thing HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and b"X-Served-By: b1" in head
        lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
        assert len(lengths) == 1 and int(lengths[0].split(b":")[1]) > 0  # what a GET would get
        following = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert following.startswith(b"HTTP/1.1 200") and b"X-Served-By: b2" in following  # no body came between
        writer.close()

    run(scenario)


def test_a_chunked_body_reaches_the_gateway_whole():
    async def scenario(lab: Lab):
        await two_backends(lab)
        chunked = (
            b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        answers = await exchange(lab, chunked)
        assert status(answers[0]) == 200
        assert body(answers[0])["body"] == "hello world"

    run(scenario)


def test_a_chunked_body_over_the_limit_is_a_413():
    async def scenario(lab: Lab):
        await two_backends(lab, max_body_bytes=8)
        chunked = (
            b"POST /orders HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n"
        )
        answers = await exchange(lab, chunked, answers=2)
        assert [status(a) for a in answers] == [413]
        assert "SCALELAB_MAX_BODY_BYTES" in body(answers[0])["error"]
        assert lab.backends["b1"].app[SEEN] == lab.backends["b2"].app[SEEN] == []

    run(scenario)


def test_an_idle_connection_is_closed_after_the_keepalive_time(monkeypatch):
    monkeypatch.setattr(kit_listener, "KEEPALIVE_SECONDS", 0.2)
    monkeypatch.setattr(kit_listener, "SWEEP_SECONDS", 0.05)

    async def scenario(lab: Lab):
        await two_backends(lab)
        reader, writer = await connect(lab)
        writer.write(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await asyncio.wait_for(reader.read(), 5)  # the rest, then EOF when the listener closes it
        assert reader.at_eof()
        writer.close()

    run(scenario)


def test_own_routes_go_to_the_app_and_everything_else_to_a_gateway():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.get("/lb/status") as response:
            assert response.status == 200
            assert "X-Served-By" not in response.headers
        async with client.post("/health") as response:  # not an own route: the method differs
            assert response.headers["X-Served-By"] in ("b1", "b2")
        async with client.delete("/lb/backends/b1") as response:
            await json_error(response, 401)  # the own route, which needs the admin token

    run(scenario)


def test_own_routes_match_as_the_apps_router_does():
    own = OwnRoutes([("GET", "/health", "health", False), ("DELETE", "/lb/backends/{name}", "remove", True)])
    assert own.match("GET", "/health") == own.match("GET", "/health?verbose=1") == "/health"
    assert own.match("HEAD", "/health") is None
    assert own.match("GET", "/health/") is None
    assert own.match("DELETE", "/lb/backends/gateway-2") == "/lb/backends/{name}"
    assert own.match("DELETE", "/lb/backends/gateway%2D2") == "/lb/backends/{name}"
    assert own.match("DELETE", "/lb/backends/a/b") is None
    assert own.match("DELETE", "/lb/backends/") is None


def test_the_balancers_own_routes_refuse_a_missing_host_and_take_long_headers_with_json_answers():
    async def scenario(lab: Lab):
        await two_backends(lab)
        (no_host,) = await exchange(lab, b"GET /health HTTP/1.1\r\n\r\n")
        assert status(no_host) == 403 and "SCALELAB_ALLOWED_HOSTS" in body(no_host)["error"]
        long = b"GET /lb/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"x" * 20_000 + b"\r\n\r\n"
        (answer,) = await exchange(lab, long)
        assert status(answer) == 200 and "backends" in body(answer)
        assert lab.backends["b1"].app[SEEN] == lab.backends["b2"].app[SEEN] == []
