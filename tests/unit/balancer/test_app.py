"""The balancer app served on 127.0.0.1, in front of small aiohttp backends and raw asyncio servers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from yarl import URL

from services.balancer.app import BALANCER, create_app
from services.balancer.listener import Listener
from services.kit.config import ConfigError
from tests.unit.kit.test_upstream import EXTRAS, STALE, RawServer, Reply, Seen, listening_socket, reply, stop_accepting

ADMIN = {"X-Admin-Token": "t"}
SEEN = web.AppKey("seen", list)


class Served:
    """An aiohttp app served by AppRunner on 127.0.0.1 and an OS-chosen port, in the running event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.sock = listening_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.running = False
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> Served:
        await self._open()
        self.running = True
        return self

    async def stop(self) -> None:
        """Stop accepting, then close every connection (see stop_accepting) and the app."""
        if self.running:
            self.running = False
            await stop_accepting(self.sock)
            await self._close()
        self.sock.close()

    async def _open(self) -> None:
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()

    async def _close(self) -> None:
        await self.runner.cleanup()


class ServedBalancer(Served):
    """The balancer, served by its own listener (which runs its app) instead of an AppRunner."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app)
        self.listener = Listener(app)

    async def _open(self) -> None:
        await self.listener.start(sock=self.sock)

    async def _close(self) -> None:
        await self.listener.stop(grace=1.0)


def backend(name: str) -> web.Application:
    """A stand-in gateway: answers /health and echoes, as JSON, what it received and who it is."""
    seen: list[dict[str, Any]] = []

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"method": request.method, "path": request.raw_path, "body": body})
        return web.json_response(
            {
                "backend": name,
                "method": request.method,
                "path": request.raw_path,
                "body": body.decode(),
                "forwarded_for": request.headers.get("X-Forwarded-For"),
                "custom": request.headers.get("X-Custom"),
                "hop_by_hop": [h for h in ("TE", "Proxy-Authorization", "Keep-Alive") if h in request.headers],
                "deadline": request.headers.getall("X-Request-Deadline", []),
            },
            headers={"X-Backend": name},
        )

    app = web.Application()
    app[SEEN] = seen
    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def healthy_but_drops_posts(request: Seen) -> Reply:
    """A raw backend that passes its health checks and drops the connection on anything else."""
    if request.target == "/health":
        return reply(200, b'{"status": "ok"}', ("Content-Type: application/json",))
    return Reply(close=True)


class Lab:
    """Backends, the balancer in front of them, and a client session to the balancer."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self.stack = stack
        self.backends: dict[str, Served] = {}
        self.balancer: ServedBalancer | None = None
        self.client: aiohttp.ClientSession | None = None

    async def backend(self, name: str) -> Served:
        served = Served(backend(name))
        self.stack.push_async_callback(served.stop)
        await served.start()
        self.backends[name] = served
        return served

    async def raw(self, answer: Callable[[Seen], Reply]) -> RawServer:
        return await self.stack.enter_async_context(RawServer(answer))

    async def start(self, backends: list[str], **overrides: Any) -> aiohttp.ClientSession:
        settings = {"backends": backends, "admin_token": "t", "health_interval": 0.05, "health_timeout": 0.5}
        settings.update(overrides)
        app = create_app(settings, registry=CollectorRegistry())
        self.stack.callback(app[BALANCER].tier.checker.stop)  # runs after the balancer's runner is cleaned up
        self.balancer = ServedBalancer(app)
        self.stack.push_async_callback(self.balancer.stop)
        await self.balancer.start()
        # The timeout only turns a hang into a failure; no test gets near it.
        session = aiohttp.ClientSession(self.balancer.url, timeout=aiohttp.ClientTimeout(total=5))
        self.client = await self.stack.enter_async_context(session)
        return self.client

    async def status(self) -> dict[str, Any]:
        """Return /lb/status, with ``backends`` keyed by name."""
        assert self.client is not None
        async with self.client.get("/lb/status") as response:
            assert response.status == 200
            body = await response.json()
        body["backends"] = {entry["name"]: entry for entry in body["backends"]}
        return body

    async def state(self, name: str) -> str:
        return (await self.status())["backends"][name]["state"]


def run(scenario: Callable[[Lab], Awaitable[None]]) -> None:
    async def main() -> None:
        async with AsyncExitStack() as stack:
            await scenario(Lab(stack))

    asyncio.run(main())


async def until(condition: Callable[[], Awaitable[Any]], timeout: float = 5.0, what: str = "condition") -> Any:
    """Await ``condition()`` until it is truthy and return it; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return result


async def json_error(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["status"] == status
    assert body["error"]
    return body


async def two_backends(lab: Lab, **overrides: Any) -> aiohttp.ClientSession:
    b1, b2 = await lab.backend("b1"), await lab.backend("b2")
    return await lab.start([f"b1={b1.url}", f"b2={b2.url}"], **overrides)


# ------------------------------------------------------------------ proxying


def test_requests_alternate_between_the_backends_and_say_who_served_them():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        served = []
        for _ in range(6):
            async with client.get("/process") as response:
                assert response.status == 200
                body = await response.json()
                assert response.headers["X-Served-By"] == body["backend"]
                assert response.headers["X-Backend"] == body["backend"]  # the backend's own headers pass through
                served.append(body["backend"])
        assert served == ["b1", "b2"] * 3

    run(scenario)


def test_the_backend_sees_the_original_path_query_body_and_the_client_address():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        path = "/items/a%2Fb?q=hello%20world&sym=%26%3D&u=%E2%9C%93"
        headers = {"X-Custom": "kept", "Content-Type": "application/json"}
        async with client.post(URL(path, encoded=True), data=b'{"n": 42}', headers=headers) as response:
            assert response.status == 200
            body = await response.json()
        assert body["method"] == "POST"
        assert body["path"] == path
        assert body["body"] == '{"n": 42}'
        assert body["forwarded_for"] == "127.0.0.1"
        assert body["custom"] == "kept"
        seen = lab.backends[body["backend"]].app[SEEN]
        assert seen == [{"method": "POST", "path": path, "body": b'{"n": 42}'}]

    run(scenario)


def test_a_stopped_backend_is_skipped_and_shown_down():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for _ in range(2):  # both backends now have a kept-alive connection from the balancer
            async with client.get("/warm") as response:
                assert response.status == 200
        await lab.backends["b1"].stop()
        for _ in range(6):
            async with client.get("/process") as response:
                assert response.status == 200
                assert (await response.json())["backend"] == "b2"
                assert response.headers["X-Served-By"] == "b2"
        status = await lab.status()
        assert status["backends"]["b1"]["state"] == "down"
        assert status["backends"]["b1"]["healthy"] is False
        assert status["backends"]["b2"]["state"] == "healthy"
        assert status["healthy"] == 1

    run(scenario)


def test_with_every_backend_stopped_the_answer_is_503():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.get("/warm") as response:
            assert response.status == 200
        for served in lab.backends.values():
            await served.stop()
        for _ in range(3):
            async with client.get("/process") as response:
                assert "no healthy backend" in (await json_error(response, 503))["error"]
        async with client.post("/orders", json={"n": 1}) as response:
            await json_error(response, 503)
        assert (await lab.state("b1"), await lab.state("b2")) == ("down", "down")

    run(scenario)


def test_health_checks_take_a_stopped_backend_down_without_traffic():
    async def scenario(lab: Lab):
        await two_backends(lab)
        await lab.backends["b2"].stop()

        async def b2_down():
            return await lab.state("b2") == "down"

        await until(b2_down, what="the health checks to take b2 down")
        assert await lab.state("b1") == "healthy"

    run(scenario)


def test_a_post_whose_backend_drops_the_connection_is_a_502_and_not_retried():
    async def scenario(lab: Lab):
        dropper = await lab.raw(healthy_but_drops_posts)
        other = await lab.backend("other")
        # round robin starts with the first backend listed
        client = await lab.start([f"dropper=http://127.0.0.1:{dropper.port}", f"other={other.url}"])
        async with client.post("/orders", json={"n": 1}) as response:
            body = await json_error(response, 502)
        assert "not safe to retry" in body["error"]
        assert "dropper" in body["error"]
        assert [r.target for r in dropper.requests if r.method == "POST"] == ["/orders"]
        assert other.app[SEEN] == []  # not sent again to the other backend either
        assert await lab.state("dropper") == "healthy"  # a broken answer alone does not take it down
        # a GET is safe to send again: the one the dropper drops is answered by the other backend
        for _ in range(2):
            async with client.get("/read") as response:
                assert response.status == 200
                assert (await response.json())["backend"] == "other"
        assert [r.target for r in dropper.requests if r.method == "GET" and r.target != "/health"] == ["/read"]
        assert [request["path"] for request in other.app[SEEN]] == ["/read", "/read"]

    run(scenario)


def test_a_post_with_expect_100_continue_gets_the_backends_answer():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for n in range(2):  # the backend answers 100 Continue first; the client must get the final answer
            async with client.post("/orders", data=b"x" * 2048, expect100=True) as response:
                assert response.status == 200
                body = await response.json()
            assert body["backend"] == ("b1", "b2")[n]
            assert body["body"] == "x" * 2048

    run(scenario)


def test_an_oversize_body_is_413():
    async def scenario(lab: Lab):
        client = await two_backends(lab, max_body_bytes=1024)
        async with client.post("/upload", data=b"x" * 4096) as response:
            await json_error(response, 413)
        async with client.post("/upload", data=b"x" * 1000) as response:
            assert response.status == 200
        seen = lab.backends["b1"].app[SEEN] + lab.backends["b2"].app[SEEN]
        assert [len(request["body"]) for request in seen] == [1000]

    run(scenario)


# ------------------------------------------------------------------ the balancer's own routes


def test_control_needs_the_admin_token():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for headers in ({}, {"X-Admin-Token": "wrong"}):
            async with client.get("/control", headers=headers) as response:
                await json_error(response, 401)
            async with client.put("/control", headers=headers, json={"algorithm": "least_connections"}) as response:
                await json_error(response, 401)
        assert (await lab.status())["algorithm"] == "round_robin"
        async with client.get("/control", headers=ADMIN) as response:
            assert response.status == 200
            assert (await response.json())["knobs"]["algorithm"]["value"] == "round_robin"

    run(scenario)


def test_control_changes_the_algorithm():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.put("/control", headers=ADMIN, json={"algorithm": "least_connections"}) as response:
            assert response.status == 200
            assert (await response.json())["changed"] == {"algorithm": "least_connections"}
        assert (await lab.status())["algorithm"] == "least_connections"
        for bad in ({"algorithm": "fastest"}, {"no_such_knob": 1}, {}):
            async with client.put("/control", headers=ADMIN, json=bad) as response:
                await json_error(response, 400)
        async with client.put("/control", headers=ADMIN, data=b"not json") as response:
            await json_error(response, 400)
        assert (await lab.status())["algorithm"] == "least_connections"
        async with client.get("/process") as response:
            assert response.status == 200

    run(scenario)


def test_metrics_and_health():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.get("/process") as response:
            assert response.status == 200
        async with client.get("/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        assert 'scalelab_backend_up{backend="b1",pool="gateways"} 1.0' in text
        assert "scalelab_backend_up" in text
        assert "scalelab_http_requests" in text
        async with client.get("/health") as response:
            body = await response.json()
        assert body["status"] == "ok"
        assert body["healthy_backends"] == 2

    run(scenario)


# ------------------------------------------------------------------ deadlines


def test_the_gateway_gets_a_deadline_before_the_balancers_own_wait_ends():
    async def scenario(lab: Lab):
        client = await two_backends(lab, upstream_timeout=4.0)
        async with client.get("/data") as response:
            sent = (await response.json())["deadline"]
        assert len(sent) == 1
        assert time.time() + 3.5 < float(sent[0]) < time.time() + 4.0  # the upstream timeout, less a hop margin
        # A client in more of a hurry shortens it, and its own header is replaced, not passed on beside ours.
        soon = time.time() + 1.0
        async with client.get("/data", headers={"X-Request-Deadline": f"{soon:.3f}"}) as response:
            sent = (await response.json())["deadline"]
        assert len(sent) == 1 and soon - 0.2 < float(sent[0]) < soon
        # ... but cannot lengthen it.
        async with client.get("/data", headers={"X-Request-Deadline": f"{time.time() + 60:.3f}"}) as response:
            assert float((await response.json())["deadline"][0]) < time.time() + 4.0

    run(scenario)


def test_a_deadline_that_is_past_or_not_a_time_never_reaches_a_gateway():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.get("/data", headers={"X-Request-Deadline": f"{time.time() - 1:.3f}"}) as response:
            assert "SCALELAB_UPSTREAM_TIMEOUT" in (await json_error(response, 504))["error"]
        async with client.get("/data", headers={"X-Request-Deadline": "soon"}) as response:
            assert "X-Request-Deadline" in (await json_error(response, 400))["error"]
        assert not any(backend.app[SEEN] for backend in lab.backends.values())

    run(scenario)


def test_the_balancer_stops_waiting_at_the_clients_deadline():
    async def scenario(lab: Lab):
        slow = Served(slow_backend("slow", 3.0))
        lab.stack.push_async_callback(slow.stop)
        await slow.start()
        client = await lab.start([f"slow={slow.url}"])
        started = time.monotonic()
        async with client.get("/slow", headers={"X-Request-Deadline": f"{time.time() + 0.5:.3f}"}) as response:
            assert "slow" in (await json_error(response, 504))["error"]
        assert time.monotonic() - started < 1.5

    run(scenario)


# ------------------------------------------------------------------ scaling in


def slow_backend(name: str, seconds: float) -> web.Application:
    """A stand-in gateway whose /slow answers after ``seconds``."""
    app = backend(name)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.json_response({"backend": name})

    app.router.add_get("/slow", slow)
    return app


def test_removing_a_gateway_needs_the_admin_token():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for headers in ({}, {"X-Admin-Token": "wrong"}):
            async with client.delete("/lb/backends/b2", headers=headers) as response:
                await json_error(response, 401)
        assert set((await lab.status())["backends"]) == {"b1", "b2"}

    run(scenario)


def test_a_removed_gateway_gets_no_more_requests_and_is_no_longer_shown_or_exported():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.delete("/lb/backends/b1", headers=ADMIN) as response:
            assert response.status == 200
            assert await response.json() == {"removed": "b1"}
        status = await lab.status()
        assert list(status["backends"]) == ["b2"]
        for _ in range(4):
            async with client.get("/process") as response:
                assert (await response.json())["backend"] == "b2"
        async with client.get("/control", headers=ADMIN) as response:
            knobs = (await response.json())["knobs"]
        assert "weight.b1" not in knobs and "weight.b2" in knobs
        async with client.get("/metrics") as response:
            text = await response.text()
        assert 'knob="weight.b1"' not in text and 'knob="weight.b2"' in text
        assert 'scalelab_backend_up{backend="b1"' not in text
        async with client.delete("/lb/backends/b1", headers=ADMIN) as response:
            body = await json_error(response, 404)
        assert "'b1'" in body["error"] and "b2" in body["error"] and body["backends"] == ["b2"]

    run(scenario)


def test_the_last_gateway_cannot_be_removed():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.delete("/lb/backends/b1", headers=ADMIN) as response:
            assert response.status == 200
        async with client.delete("/lb/backends/b2", headers=ADMIN) as response:
            body = await json_error(response, 409)
        assert "last backend" in body["error"]
        async with client.get("/process") as response:
            assert response.status == 200

    run(scenario)


def test_removal_lets_the_requests_in_flight_finish_first():
    async def scenario(lab: Lab):
        slow = Served(slow_backend("slow", 0.3))
        lab.stack.push_async_callback(slow.stop)
        await slow.start()
        other = await lab.backend("other")
        client = await lab.start([f"slow={slow.url}", f"other={other.url}"])  # round robin: /slow goes to slow

        async def fetch() -> tuple[int, dict[str, Any]]:
            async with client.get("/slow") as response:
                return response.status, await response.json()

        in_flight = asyncio.create_task(fetch())
        await until(lambda: _in_flight(lab, "slow"), what="the request to reach the slow gateway")
        async with client.delete("/lb/backends/slow", headers=ADMIN) as response:
            assert response.status == 200
            assert in_flight.done()  # the removal answered only once the request was done
        assert await in_flight == (200, {"backend": "slow"})

    run(scenario)


async def _in_flight(lab: Lab, name: str) -> bool:
    return (await lab.status())["backends"][name]["in_flight"] > 0


# ------------------------------------------------------------------ gateways that misbehave

HEALTHY = reply(200, b'{"status": "ok"}', ("Content-Type: application/json",), close=True)
# Methods alternate so that some requests cannot be sent again: each must get its own answer first time.
CALLS = [("GET", "/a"), ("POST", "/b"), ("GET", "/c"), ("POST", "/d"), ("PUT", "/e")]


def gateway(answer: Callable[[Seen], Reply]) -> Callable[[Seen], Reply]:
    """A raw gateway that passes its health checks and answers everything else with ``answer``."""
    return lambda request: HEALTHY if request.target == "/health" else answer(request)


def echo(request: Seen, head: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """Return an answer whose body names the request it answers."""
    body = f"{request.method} {request.target}".encode()
    return head + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def call(client: aiohttp.ClientSession, method: str, path: str) -> None:
    """Send one request through the balancer and check it got its own answer, whole and alone."""
    async with client.request(method, path, data=b"{}" if method != "GET" else None) as response:
        body = await response.read()
        assert (response.status, body) == (200, f"{method} {path}".encode())
        assert "X-Stale" not in response.headers


def _async(condition: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """Return ``condition`` as the coroutine function :func:`until` polls."""

    async def check() -> Any:
        return condition()

    return check


def proxied_connections(raw: RawServer) -> list[int]:
    """Return the connection each request other than a health check came on."""
    return [r.connection for r in raw.requests if r.target != "/health"]


@pytest.mark.parametrize("extra", EXTRAS.values(), ids=EXTRAS.keys())
@pytest.mark.parametrize("when", ["with-the-answer", "after-the-answer"])
def test_bytes_a_gateway_sends_after_its_answer_never_reach_another_client(extra, when):
    def answer(request: Seen) -> Reply:
        return Reply(echo(request) + extra) if when == "with-the-answer" else Reply(echo(request), later=extra)

    async def scenario(lab: Lab):
        raw = await lab.raw(gateway(answer))
        client = await lab.start([f"gw=http://127.0.0.1:{raw.port}"])
        for n, (method, path) in enumerate(CALLS, 1):
            await call(client, method, path)
            if when == "after-the-answer":
                await until(_async(lambda n=n: raw.later_sent == n), what="the gateway's extra bytes")
        connections = proxied_connections(raw)
        assert len(set(connections)) == len(CALLS)  # no connection carried a second request

    run(scenario)


def test_bytes_a_gateway_sends_on_an_idle_connection_never_reach_a_client():
    async def scenario(lab: Lab):
        raw = await lab.raw(gateway(lambda request: Reply(echo(request))))
        client = await lab.start([f"gw=http://127.0.0.1:{raw.port}"])
        await call(client, "GET", "/warm")
        for method, path in CALLS:
            poked = raw.poke(STALE)
            assert poked
            await call(client, method, path)  # at once: the bytes may not have been read yet
        poked = raw.poke(b"HTTP/1.1 100 Continue\r\n\r\n")
        await until(_async(lambda: not poked & raw.open.keys()), what="the balancer to close the poked connection")
        await call(client, "POST", "/after")
        assert len(set(proxied_connections(raw))) == len(CALLS) + 2

    run(scenario)


def test_a_gateway_answering_http_1_0_without_keep_alive_gets_a_new_connection_each_time():
    async def scenario(lab: Lab):
        raw = await lab.raw(gateway(lambda request: Reply(echo(request, b"HTTP/1.0 200 OK"))))  # and keeps it open
        client = await lab.start([f"gw=http://127.0.0.1:{raw.port}"])
        for method, path in CALLS:
            await call(client, method, path)
            raw.poke(STALE)  # whatever it sends on the connection later
        assert len(set(proxied_connections(raw))) == len(CALLS)

    run(scenario)


def test_a_gateway_answering_http_1_0_until_it_closes_is_read_whole():
    async def scenario(lab: Lab):
        eof = gateway(
            lambda request: Reply(
                b"HTTP/1.0 200 OK\r\n\r\n" + f"{request.method} {request.target}".encode(), close=True
            )
        )
        raw = await lab.raw(eof)
        client = await lab.start([f"gw=http://127.0.0.1:{raw.port}"])
        for method, path in CALLS:
            await call(client, method, path)

    run(scenario)


# ------------------------------------------------------------------ hostile input

BAD_URLS = [
    "http://[::1",
    "http://[zz::1]:5000",
    "http://host:99999",
    "http://host:0",
    "http://host:-1",
    "http://host:²",  # passes str.isdigit(), not int()
    "http://host:١٢",  # Arabic-Indic digits: int() reads them, a socket would not
    "http://host:" + "9" * 5000,
    "http://:80",
    "http://",
    "https://host:5000",
    "ftp://host:21",
    "file:///etc/passwd",
    "HTTP//host:5000",
    "http://user:secret@host:5000",
    "http://host:5000/path",
    "http://host:5000?q=1",
    "http://host:5000#top",
    "http://host name:5000",
    " http://host:5000",
    "http://host:5000\r\nX-Injected: 1",
    "",
]
BAD_NAMES = ["", "a/b", "gw 1", "-gw", "x" * 64, "gw\n1", "ü"]
BAD_BODIES = {
    "not-json": b"not json",
    "empty": b"",
    "nested-past-the-parser": b"[" * 100_000 + b"]" * 100_000,
    "nested-past-the-limit": b'{"algorithm": ' + b"[" * 50 + b"1" + b"]" * 50 + b"}",
    "nested-just-within-the-parser": b'{"algorithm": ' + b"[" * 900 + b"]" * 900 + b"}",
    "nan": b'{"weight.b1": NaN}',
    "infinity": b'{"weight.b1": Infinity}',
    "minus-infinity": b'{"weight.b1": -Infinity}',
    "float-overflow": b'{"weight.b1": 1e999}',
    "huge-int": b'{"weight.b1": 1' + b"0" * 5000 + b"}",
    "int-past-a-float": b'{"weight.b1": 1' + b"0" * 400 + b"}",
    "large-int": b'{"weight.b1": 100000000000000000000000000000}',
    "not-utf8": b'{"algorithm": "\xff\xfe"}',
    "a-list": b"[1, 2]",
    "a-string": b'"least_connections"',
}


async def status_and_body(response: aiohttp.ClientResponse) -> tuple[int, Any]:
    body = await response.read()
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_gateway_url_that_cannot_be_used_is_a_400_naming_the_field(url):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.post("/lb/backends", headers=ADMIN, json={"name": "gw-3", "url": url}) as response:
            body = await json_error(response, 400)
        assert body["field"] == "url"
        assert "url" in body["error"]
        assert set((await lab.status())["backends"]) == {"b1", "b2"}
        async with client.get("/process") as response:
            assert response.status == 200

    run(scenario)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_gateway_name_that_cannot_be_used_is_a_400_naming_the_field(name):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        payload = {"name": name, "url": lab.backends["b1"].url}
        async with client.post("/lb/backends", headers=ADMIN, json=payload) as response:
            body = await json_error(response, 400)
        assert body["field"] == "name"
        assert set((await lab.status())["backends"]) == {"b1", "b2"}

    run(scenario)


def test_a_usable_gateway_url_is_accepted_in_each_form():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        port = lab.backends["b1"].url.rsplit(":", 1)[1]
        for name, url in (("by-ip", f"http://127.0.0.1:{port}/"), ("by-name", f"http://localhost:{port}")):
            async with client.post("/lb/backends", headers=ADMIN, json={"name": name, "url": url}) as response:
                assert response.status == 201
        assert set((await lab.status())["backends"]) == {"b1", "b2", "by-ip", "by-name"}
        for _ in range(4):
            async with client.get("/process") as response:
                assert response.status == 200

    run(scenario)


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_a_hostile_json_body_is_a_400_on_every_json_route(body):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for method, path in (("PUT", "/control"), ("POST", "/lb/backends")):
            headers = {**ADMIN, "Content-Type": "application/json"}
            async with client.request(method, path, data=body, headers=headers) as response:
                await json_error(response, 400)
        async with client.get("/control", headers=ADMIN) as response:
            assert (await response.json())["knobs"]["weight.b1"]["value"] == 1

    run(scenario)


@pytest.mark.parametrize("weight", ["1", 1.5, True, -1, 101, 10**30, None], ids=repr)
def test_a_weight_that_is_not_a_small_whole_number_is_a_400(weight):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        payload = {"name": "gw-3", "url": lab.backends["b1"].url, "weight": weight}
        async with client.post("/lb/backends", headers=ADMIN, json=payload) as response:
            await json_error(response, 400)
        async with client.put("/control", headers=ADMIN, json={"weight.b1": weight}) as response:
            await json_error(response, 400)

    run(scenario)


def test_a_body_in_a_charset_nobody_knows_is_a_400_not_a_crash():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        headers = {**ADMIN, "Content-Type": "application/json; charset=no-such-charset"}
        async with client.put("/control", headers=headers, data=b'{"algorithm": "least_connections"}') as response:
            assert response.status == 200  # read as JSON, which says its own encoding

    run(scenario)


def test_hostile_paths_and_queries_on_every_route_get_no_5xx():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        attempts = [
            ("GET", "/lb/status?x=%ff%00&y=" + "z" * 4000),
            ("GET", "/health?%%%"),
            ("GET", "/metrics?name[]=1"),
            ("GET", "/control?knob=%00"),
            ("PUT", "/control?algorithm=fastest"),
            ("DELETE", "/lb/backends/%00"),
            ("DELETE", "/lb/backends/" + "x" * 4000),
            ("DELETE", "/lb/backends/..%2F..%2Fetc"),
            ("POST", "/token?user=%ff"),
            ("GET", "/%zz/../..//x?%"),
        ]
        for method, path in attempts:
            async with client.request(method, URL(path, encoded=True), headers=ADMIN) as response:
                status, body = await status_and_body(response)
                assert status < 500, (method, path, body)

    run(scenario)


def test_a_deeply_nested_body_is_passed_to_the_gateway_untouched():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        nested = b"[" * 100_000 + b"]" * 100_000
        async with client.post("/token", data=nested, headers={"Content-Type": "application/json"}) as response:
            assert response.status == 200
            assert (await response.json())["body"] == nested.decode()

    run(scenario)


def test_an_unknown_method_is_proxied_and_counted_as_other():
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for method in ("PURGE", "PROPFIND", "MKCOL"):
            async with client.request(method, "/items/1") as response:
                assert response.status == 200
                assert (await response.json())["method"] == method
        async with client.get("/process") as response:
            assert response.status == 200
        async with client.get("/metrics") as response:
            text = await response.text()
        assert 'method="other"' in text
        for method in ("PURGE", "PROPFIND", "MKCOL"):
            assert f'method="{method}"' not in text
        assert 'method="GET"' in text

    run(scenario)


async def raw_request(url: str, data: bytes) -> tuple[int, Any]:
    """Send ``data`` as is to the server at ``url``; return the status and the body (JSON when it parses)."""
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), json.loads(body)
    except ValueError:
        return int(head.split(b" ")[1]), body


def test_an_absolute_form_target_reaches_the_gateway_as_a_path_and_its_host_is_checked():
    async def scenario(lab: Lab):
        await two_backends(lab)
        assert lab.balancer is not None
        url = lab.balancer.url
        authority = url.removeprefix("http://")
        ours = f"GET {url}/items?q=1 HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode()
        status, body = await raw_request(url, ours)
        assert (status, body["path"]) == (200, "/items?q=1")
        foreign = f"GET http://evil.example/items HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        status, body = await raw_request(url, foreign.encode())
        assert status == 403
        assert "evil.example" in body["error"]
        seen = lab.backends["b1"].app[SEEN] + lab.backends["b2"].app[SEEN]
        assert [request["path"] for request in seen] == ["/items?q=1"]

    run(scenario)


def test_settings_the_balancer_cannot_use_stop_it_at_start_up():
    for overrides, named in (
        ({"backends": ["gw=http://127.0.0.1:99999"]}, "BALANCER_BACKENDS"),
        ({"backends": ["gw=http://[::1"]}, "BALANCER_BACKENDS"),
        ({"backends": ["gw/1=http://127.0.0.1:5000"]}, "BALANCER_BACKENDS"),
        ({"allowed_hosts": ["http://lab.example/"]}, "SCALELAB_ALLOWED_HOSTS"),
    ):
        with pytest.raises(ConfigError, match=named):
            create_app(overrides, registry=CollectorRegistry())


# ------------------------------------------------------------------ Host and Origin

FOREIGN_HOSTS = ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.2", "[::2]:8000", "::1", ""]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_request_for_another_host_is_refused_on_every_route(host):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        for path in ("/health", "/metrics", "/lb/status", "/control", "/process", "/token"):
            async with client.get(path, headers={**ADMIN, "Host": host}) as response:
                body = await json_error(response, 403)
                assert "SCALELAB_ALLOWED_HOSTS" in body["error"]
        async with client.put(
            "/control", headers={**ADMIN, "Host": host}, json={"algorithm": "least_connections"}
        ) as r:
            await json_error(r, 403)
        assert lab.backends["b1"].app[SEEN] == lab.backends["b2"].app[SEEN] == []
        assert (await lab.status())["algorithm"] == "round_robin"

    run(scenario)


def test_a_request_without_a_host_is_refused():
    async def scenario(lab: Lab):
        await two_backends(lab)
        assert lab.balancer is not None
        status, body = await raw_request(lab.balancer.url, b"GET /process HTTP/1.0\r\n\r\n")
        assert status == 403
        assert "Host" in body["error"]

    run(scenario)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "LOCALHOST",
        "localhost.",
        "127.0.0.1",
        "[::1]",
        "[::1]:8000",
        "load-balancer:8000",
    ],
)
def test_the_balancers_own_names_are_allowed_with_or_without_a_port(host):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.get("/process", headers={"Host": host}) as response:
            assert response.status == 200
        async with client.get("/health", headers={"Host": host}) as response:
            assert response.status == 200

    run(scenario)


def test_allowed_hosts_adds_names_and_a_star_allows_every_one():
    async def scenario(lab: Lab):
        client = await two_backends(lab, instance="lb-7", allowed_hosts=["lab.example", "10.0.0.5"])
        for host, status in (("lab.example:8000", 200), ("10.0.0.5", 200), ("lb-7", 200), ("load-balancer", 403)):
            async with client.get("/process", headers={"Host": host}) as response:
                assert response.status == status, host

    async def star(lab: Lab):
        client = await two_backends(lab, allowed_hosts=["*"])
        for host in ("evil.example", "anything:1234"):
            async with client.get("/process", headers={"Host": host}) as response:
                assert response.status == 200

    run(scenario)
    run(star)


FOREIGN_ORIGINS = [
    {"Origin": "http://evil.example"},
    {"Origin": "https://evil.example:8000"},
    {"Origin": "http://localhost.evil.example"},
    {"Origin": "http://localhost@evil.example"},
    {"Origin": "null"},
    {"Origin": "file://"},
    {"Referer": "http://evil.example/page?x=1"},
]


@pytest.mark.parametrize("source", FOREIGN_ORIGINS, ids=lambda headers: next(iter(headers.items()))[1])
def test_a_state_changing_request_from_another_site_is_refused_on_every_route(source):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        headers = {**ADMIN, **source}
        refused = [
            ("POST", "/lb/backends", {"name": "gw-3", "url": lab.backends["b1"].url}),
            ("PUT", "/control", {"algorithm": "least_connections"}),
            ("DELETE", "/lb/backends/b2", None),
            ("POST", "/token", {"user": "x"}),
            ("PUT", "/items/1", {"n": 1}),
            ("PATCH", "/items/1", {"n": 1}),
            ("DELETE", "/items/1", None),
            ("PURGE", "/items/1", None),
        ]
        for method, path, payload in refused:
            async with client.request(method, path, headers=headers, json=payload) as response:
                body = await json_error(response, 403)
                assert "cross-site" in body["error"]
        assert lab.backends["b1"].app[SEEN] == lab.backends["b2"].app[SEEN] == []
        status = await lab.status()
        assert (status["algorithm"], set(status["backends"])) == ("round_robin", {"b1", "b2"})
        async with client.get("/process", headers=source) as response:  # reading is allowed from anywhere
            assert response.status == 200

    run(scenario)


@pytest.mark.parametrize(
    "source",
    [{}, {"Origin": "http://localhost:8050"}, {"Origin": "http://127.0.0.1"}, {"Referer": "http://[::1]:8050/x"}],
    ids=["none", "localhost-origin", "ip-origin", "ipv6-referer"],
)
def test_a_state_changing_request_with_no_origin_or_our_own_is_served(source):
    async def scenario(lab: Lab):
        client = await two_backends(lab)
        async with client.post("/token", headers=source, json={"user": "x"}) as response:
            assert response.status == 200
        async with client.put("/control", headers={**ADMIN, **source}, json={"algorithm": "power_of_two"}) as response:
            assert response.status == 200

    run(scenario)
