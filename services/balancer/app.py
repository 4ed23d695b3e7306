"""The load balancer: an asyncio reverse proxy in front of the gateways, with its own admin routes.

Its own routes are /health, /metrics, /control and /lb/*; every other request goes to a gateway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from ..kit import ADMIN_HEADER, ApiError, HttpMetrics, Knobs, check_admin_token, error_body, load_config, parse_backends
from ..kit.app import configure_logging
from ..kit.metrics import exposition
from ..kit.tier import DRAIN_POLL_SECONDS, DRAIN_SECONDS, BalancedTier
from .config import BalancerConfig
from .proxy import Proxy

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda obj: json.dumps(obj))


class Balancer:
    """The balancer's parts: config, knobs, the tier of gateways, the proxy and metrics."""

    def __init__(self, config: BalancerConfig, registry: CollectorRegistry) -> None:
        config.instance = config.instance or "load-balancer"
        self.config = config
        self.registry = registry
        self.knobs = Knobs([], registry)
        self.tier = BalancedTier(
            "gateways", parse_backends(config.backends, "BALANCER_BACKENDS"), config, self.knobs, registry
        )
        self.proxy = Proxy(self.tier, config.upstream_timeout, config.connect_timeout)
        self.metrics = HttpMetrics("load-balancer", config.instance, registry)
        self.started = time.time()

    def admin(self, request: web.Request) -> None:
        """Raise a 401 ApiError unless the request carries the admin token."""
        check_admin_token(self.config.admin_token, request.headers.get(ADMIN_HEADER))

    async def json_body(self, request: web.Request) -> Any:
        """Return the request's JSON body or raise a 400 ApiError."""
        try:
            return await request.json()
        except ValueError:
            raise ApiError(400, "expected a JSON body with Content-Type: application/json") from None

    async def start_health_checks(self, _app: web.Application) -> None:
        """Start probing the gateways once the server runs."""
        self.tier.start()

    async def stop_health_checks(self, _app: web.Application) -> None:
        """Stop probing when the server shuts down."""
        self.tier.checker.stop()

    # ---------------------------------------------------------------- routes
    async def health(self, request: web.Request) -> web.Response:
        return _json({
            "status": "ok", "service": "load-balancer", "instance": self.config.instance,
            "uptime_seconds": round(time.time() - self.started, 3),
            "healthy_backends": sum(b.healthy for b in self.tier.pool.backends()),
        })  # fmt: skip

    async def metrics_route(self, request: web.Request) -> web.Response:
        body, content_type = exposition(self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def control_get(self, request: web.Request) -> web.Response:
        self.admin(request)
        return _json({"instance": self.config.instance, "knobs": self.knobs.snapshot()})

    async def control_put(self, request: web.Request) -> web.Response:
        self.admin(request)
        changed = self.knobs.update(await self.json_body(request))
        log.info("control: changed %s", changed)
        return _json({"instance": self.config.instance, "changed": changed, "knobs": self.knobs.values()})

    async def status(self, request: web.Request) -> web.Response:
        return _json(self.tier.pool.snapshot())

    async def add_backend(self, request: web.Request) -> web.Response:
        self.admin(request)
        backend = self.tier.add_backend(await self.json_body(request))
        return _json({"added": backend.name, "url": backend.url}, 201)

    async def remove_backend(self, request: web.Request) -> web.Response:
        self.admin(request)
        backend = self.tier.remove_backend(request.match_info["name"])
        # Drain here rather than in the tier: a blocking wait would stall the very requests it waits for.
        deadline = time.monotonic() + DRAIN_SECONDS
        while backend.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        self.proxy.forget(backend.name)
        return _json({"removed": backend.name})

    def observed(self, route: str, handler: Handler) -> Handler:
        """Wrap ``handler``: time it for the metrics and turn every error into a JSON answer.

        A wrapper rather than an aiohttp middleware: the middleware machinery costs measurably
        on the proxy path, which is the lab's hottest.
        """

        async def wrapper(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except ApiError as exc:
                response = _json(error_body(exc.status, exc.message, **exc.extra), exc.status)
            except web.HTTPException as exc:
                response = _json(error_body(exc.status, exc.reason), exc.status)
            except Exception:
                log.exception("unhandled error")
                response = _json(error_body(500, "internal error; see the load balancer's log"), 500)
            self.metrics.observe(route, request.method, response.status, time.perf_counter() - started)
            return response

        return wrapper


BALANCER = web.AppKey("balancer", Balancer)


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the balancer from the environment (``overrides`` win, for tests)."""
    config = load_config(BalancerConfig, overrides)
    configure_logging(config, "load-balancer")
    balancer = Balancer(config, registry or CollectorRegistry())
    app = web.Application(client_max_size=config.max_body_bytes)
    app[BALANCER] = balancer
    for method, path, handler in (
        ("GET", "/health", balancer.health),
        ("GET", "/metrics", balancer.metrics_route),
        ("GET", "/control", balancer.control_get),
        ("PUT", "/control", balancer.control_put),
        ("GET", "/lb/status", balancer.status),
        ("POST", "/lb/backends", balancer.add_backend),
        ("DELETE", "/lb/backends/{name}", balancer.remove_backend),
    ):
        app.router.add_route(method, path, balancer.observed(path, handler))
    # Everything else goes to a gateway.
    app.router.add_route("*", "/{tail:.*}", balancer.observed("proxy", balancer.proxy.handle))
    app.on_startup.append(balancer.proxy.open)
    app.on_startup.append(balancer.start_health_checks)
    app.on_cleanup.append(balancer.stop_health_checks)
    app.on_cleanup.append(balancer.proxy.close)
    return app
