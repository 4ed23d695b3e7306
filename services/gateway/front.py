"""The gateway's listener: plain ``GET /data`` reads answered on an event loop, the rest by its Flask app.

A gateway's reads are its busiest route (services/kit/front.py says why they belong on an event
loop). The listener answers a plain read itself: the token check, rate limiting and shedding
(``Gateway.admitted``), the cache lookup over a keep-alive connection, and the metrics, as the
express lane does; a miss's work (coalescing, the database, filling the cache) runs on a thread.
Every other request, and a read that is not plain, goes on to the gateway's Flask app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from ..kit import ApiError, error_body
from ..kit.errors import INTERNAL_ERROR
from ..kit.front import ExpressListener
from ..kit.listener import Answer, Request, http_date
from ..kit.origin import host_allowed
from ..kit.upstream import Upstream
from .app import Gateway, plain_data_key
from .config import GatewayConfig

__all__ = ["GatewayListener"]

log = logging.getLogger(__name__)

JSON_TYPE = (b"Content-Type", b"application/json")


class GatewayListener(ExpressListener):
    """Serve a gateway: plain reads on the event loop, everything else through its Flask app on ``app_port``."""

    def __init__(self, app: Flask, app_port: int, settings: GatewayConfig) -> None:
        super().__init__(app, app_port, settings)
        self.gateway: Gateway = app.extensions["gateway"]
        # A miss's database and microservice calls block: they get threads, as the app's requests do.
        self._blocking = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="gateway-read")
        self._cache: Upstream | None = None

    async def open(self) -> None:
        """Keep connections to the app and to the cache (their pools fill as requests come)."""
        await super().open()
        client = self.gateway.cache_aside.cache_client
        self._cache = Upstream(client.host, client.port, client.connect_timeout, client.timeout)

    async def closed(self) -> None:
        """Close the connections and let a miss's threads finish."""
        await super().closed()
        if self._cache is not None:
            self._cache.close()
        self._blocking.shutdown(wait=False, cancel_futures=True)

    async def answer(self, request: Request, client: str) -> Answer:
        """Answer a plain read here; anything else as the kit's listener does."""
        path, _, query = request.target.partition("?")
        if request.method == "GET" and path == "/data" and host_allowed(request.host, self.lanes.hosts):
            key = plain_data_key(query)
            if key is not None:
                return await self._read(request, key)
        return await super().answer(request, client)

    async def _read(self, request: Request, key: str) -> Answer:
        """Answer ``GET /data?key=`` as the app's route does, counted under its name."""
        gateway = self.gateway
        metrics = self.lanes.metrics
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
        # Flask's encoder, as the lanes use: the same bytes as the app's answers.
        payload = f"{self.lanes.dumps(body, indent=None, separators=(',', ':'))}\n".encode()
        headers = [JSON_TYPE, (b"Date", http_date())]
        headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
        return status, headers, payload

    async def _ask_cache(self, target: str, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
        assert self._cache is not None
        sent = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        answer = await self._cache.request("GET", target, sent, b"", idempotent=True, timeout=timeout)
        return answer.status, answer.body

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._blocking, function, *args)
