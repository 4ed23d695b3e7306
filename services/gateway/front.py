"""The gateway's listener: plain ``GET /data`` reads answered on an event loop, the rest by its Flask app.

Under load a Flask gateway keeps its requests on threads that take turns at the GIL in no fair
order, and that order was the p99 of the whole lab (docs/benchmarks.md): nginx and HAProxy in
front of the same gateways showed it too. On one event loop a request waits in a first-in
first-out queue instead, and a cache hit costs less than half the CPU. So the gateway's public
port is this listener (the kit's, as the balancer's is). It answers a plain read itself: the
token check, rate limiting and shedding (``Gateway.admitted``), the cache lookup over a
keep-alive connection, and the metrics, as the express lane does; a miss's work (coalescing,
the database, filling the cache) runs on a thread. Every other request, and a read that is not
plain, goes on to the gateway's Flask app on a loopback port only this process knows, with the
client's Host and headers: one implementation of everything else, with its validation and 4xx.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..kit import ApiError, error_body
from ..kit.deadline import DEADLINE_HEADER
from ..kit.errors import INTERNAL_ERROR
from ..kit.express import EXPRESS, ExpressLanes
from ..kit.listener import CONNECTION_HEADERS, Answer, HttpListener, Request, error_answer, http_date
from ..kit.origin import host_allowed
from ..kit.tier import DRAIN_SECONDS
from ..kit.upstream import Upstream, UpstreamError
from .app import Gateway, plain_data_key

__all__ = ["GatewayListener"]

log = logging.getLogger(__name__)

# What the app's answers keep of their headers: the listener frames the answer itself.
RESPONSE_SKIP = CONNECTION_HEADERS | {b"server"}
# A HEAD answer has no body to measure: the app's Content-Length says what a GET would get.
HEAD_SKIP = RESPONSE_SKIP - {b"content-length"}
JSON_HEADERS = [(b"Content-Type", b"application/json")]
DEADLINE_NAME = DEADLINE_HEADER.encode()
# The app's slowest answers: removing a microservice waits for its requests in flight.
APP_TIMEOUT_SECONDS = DRAIN_SECONDS + 30
APP_UNREACHABLE = "the gateway's app did not answer; see the gateway's log"


class GatewayListener(HttpListener):
    """Serve a gateway: plain reads on the event loop, everything else through its Flask app on ``app_port``."""

    def __init__(self, app: Any, app_port: int, threads: int) -> None:
        self.gateway: Gateway = app.extensions["gateway"]
        lanes: ExpressLanes = app.extensions[EXPRESS]
        super().__init__(self.gateway.config.max_body_bytes, "send less, or raise SCALELAB_MAX_BODY_BYTES")
        self.metrics = lanes.metrics
        self.hosts = lanes.hosts
        self._dumps: Callable[..., str] = lanes.dumps  # Flask's encoder: the same bytes as the app's answers
        self._app_port = app_port
        # A miss's database and microservice calls block: they get threads, as the app's requests do.
        self._blocking = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gateway-read")
        self._app: Upstream | None = None
        self._cache: Upstream | None = None
        self._app_answered = False  # until then a refused connection is the app still starting

    async def open(self) -> None:
        """Keep connections to the app and to the cache (their pools fill as requests come)."""
        client = self.gateway.cache_aside.cache_client
        self._app = Upstream("127.0.0.1", self._app_port, client.connect_timeout, APP_TIMEOUT_SECONDS, own_host=False)
        self._cache = Upstream(client.host, client.port, client.connect_timeout, client.timeout)

    async def closed(self) -> None:
        """Close the connections and let a miss's threads finish."""
        for upstream in (self._app, self._cache):
            if upstream is not None:
                upstream.close()
        self._blocking.shutdown(wait=False, cancel_futures=True)

    async def answer(self, request: Request, client: str) -> Answer:
        """Answer a plain read here; pass anything else to the app."""
        path, _, query = request.target.partition("?")
        if request.method == "GET" and path == "/data" and host_allowed(request.host, self.hosts):
            key = plain_data_key(query)
            if key is not None:
                return await self._read(request, key)
        return await self._passed_on(request)

    async def _read(self, request: Request, key: str) -> Answer:
        """Answer ``GET /data?key=`` as the app's route does, counted under its name."""
        gateway = self.gateway
        metrics = self.metrics
        started = time.perf_counter()
        metrics.in_flight.inc()
        try:
            authorization = next((v for k, v in request.headers if k.lower() == b"authorization"), None)
            with gateway.admitted(authorization.decode("latin-1") if authorization else None) as outcome:
                deadline = gateway.deadline_of(request.deadline)
                record, cached = await gateway.cache_aside.read_async(key, deadline, self._ask_cache, self._run)
                outcome.status = 200
            status, body, extra = 200, gateway.data_body(key, record, cached), {}
        except ApiError as exc:
            status, body, extra = exc.status, exc.body(), exc.headers
        except Exception:
            log.exception("unhandled error")
            status, body, extra = 500, error_body(500, INTERNAL_ERROR), {}
        finally:
            metrics.in_flight.dec()
        metrics.observe("/data", "GET", status, time.perf_counter() - started)
        payload = f"{self._dumps(body, indent=None, separators=(',', ':'))}\n".encode()
        headers = [*JSON_HEADERS, (b"Date", http_date())]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
        return status, headers, payload

    async def _ask_cache(self, target: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
        assert self._cache is not None
        sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        answer = await self._cache.request("GET", target, sent, b"", idempotent=True, timeout=timeout)
        return answer.status, answer.body

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._blocking, function, *args)

    async def _passed_on(self, request: Request) -> Answer:
        """Pass ``request`` to the app with the client's Host, deadline and headers; return its answer."""
        assert self._app is not None
        headers = request.headers
        if request.deadline is not None:
            headers = [(DEADLINE_NAME, request.deadline.encode("latin-1")), *headers]
        if request.host is not None:
            headers = [(b"Host", request.host.encode("latin-1")), *headers]
        try:
            answer = await self._app.request(request.method, request.target, headers, request.body, idempotent=False)
        except UpstreamError as exc:
            if self._app_answered:
                log.error("the gateway's app on port %d did not answer: %s", self._app_port, exc)
            return error_answer(503, error_body(503, APP_UNREACHABLE), {"Retry-After": "1"})
        self._app_answered = True
        skip = HEAD_SKIP if request.head_only else RESPONSE_SKIP
        return answer.status, [(k, v) for k, v in answer.headers if k.lower() not in skip], answer.body
