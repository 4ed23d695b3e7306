"""The balancer app served on 127.0.0.1, in front of small aiohttp backends and raw asyncio servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from yarl import URL

from services.balancer.app import BALANCER, create_app

from .test_upstream import RawServer, Reply, Seen, listening_socket, reply, stop_accepting

ADMIN = {"X-Admin-Token": "t"}
SEEN = web.AppKey("seen", list)


class Served:
    """An aiohttp app served by AppRunner on 127.0.0.1 and an OS-chosen port, in the running event loop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self.sock = listening_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.running = False

    async def start(self) -> Served:
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()
        self.running = True
        return self

    async def stop(self) -> None:
        """Stop accepting, then close every connection (see stop_accepting) and the app."""
        if self.running:
            self.running = False
            await stop_accepting(self.sock)
            await self.runner.cleanup()
        self.sock.close()


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
        self.balancer: Served | None = None
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
        self.balancer = Served(app)
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
