"""The load balancer: an asyncio reverse proxy in front of the gateways, with its own admin routes.

Its own routes (OWN_ROUTES: /health, /metrics, /control, /lb/*) are this aiohttp app; every other
request goes to a gateway, forwarded by the listener (listener.py) that serves both.
Every request, its own or proxied, must name the balancer as Host and, if it changes state, come
from no other site (services/kit/origin.py): the gateways behind it only see the balancer's Host.
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
from ..kit.config import ConfigError
from ..kit.discovery import DnsDiscovery, DnsTarget
from ..kit.listener import MAX_HEADER_BYTES, MAX_TARGET_BYTES  # the own routes' parser: the listener's limits
from ..kit.metrics import exposition
from ..kit.models import Added, NewBackend, PoolStatus, Removed
from ..kit.openapi import ADMIN, ControlChange, ControlView, KnobChanges, responses, with_knobs
from ..kit.origin import allowed_hosts, own_addresses, refusal
from ..kit.pool import Backend
from ..kit.tier import DRAIN_POLL_SECONDS, DRAIN_SECONDS, BalancedTier
from .apidoc import BalancerHealth, GatewayDocument, api, merged, validated
from .config import BalancerConfig
from .inputs import check_gateway, check_gateway_name, gateway_address
from .proxy import Proxy

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What a client learns of a crash: the traceback goes to the balancer's log.
CRASH_MESSAGE = "internal error; see the load balancer's log"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=lambda obj: json.dumps(obj))


class Balancer:
    """The balancer's parts: config, knobs, the tier of gateways, the proxy and metrics."""

    def __init__(self, config: BalancerConfig, registry: CollectorRegistry) -> None:
        config.instance = config.instance or "load-balancer"
        self.config = config
        self.registry = registry
        try:
            self.allowed_hosts = allowed_hosts(config.instance, config.allowed_hosts, own_addresses(config.host))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.knobs = Knobs([], registry)
        static = [] if config.discover else _gateways(config.backends)
        self.tier = BalancedTier("gateways", static, config, self.knobs, registry)
        # On Swarm and Kubernetes the gateways come and go as DNS records, not as a list.
        self.discovery = (
            DnsDiscovery(
                self.tier, DnsTarget.parse(config.discover, "BALANCER_DISCOVER"), config.discover_interval, self._gone
            )
            if config.discover
            else None
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.proxy = Proxy(self.tier, config.upstream_timeout, config.connect_timeout)
        self.metrics = HttpMetrics("load-balancer", config.instance, registry)
        self.started = time.time()
        self.gateway_doc = GatewayDocument(self.proxy.gateway_document)

    def admin(self, request: web.Request) -> None:
        """Raise a 401 ApiError unless the request carries the admin token."""
        check_admin_token(self.config.admin_token, request.headers.get(ADMIN_HEADER))

    async def start_health_checks(self, _app: web.Application) -> None:
        """Start probing the gateways once the server runs (and finding them, where DNS names them)."""
        self.loop = asyncio.get_running_loop()
        self.tier.start()
        if self.discovery is not None:
            # Its first lookup and /health calls block: off the loop, which already serves.
            await self.loop.run_in_executor(None, self.discovery.start)

    async def stop_health_checks(self, _app: web.Application) -> None:
        """Stop probing when the server shuts down."""
        self.tier.checker.stop()
        if self.discovery is not None:
            self.discovery.stop()

    async def withdraw(self, name: str, allow_last: bool = False) -> Backend:
        """Take gateway ``name`` out of rotation, wait for its requests in flight (up to DRAIN_SECONDS), forget it."""
        backend = self.tier.remove_backend(name, allow_last=allow_last)
        # Drain here rather than in the tier: a blocking wait would stall the very requests it waits for.
        deadline = time.monotonic() + DRAIN_SECONDS
        while backend.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        self.proxy.forget(backend.name)
        return backend

    def _gone(self, name: str, allow_last: bool) -> None:
        """Withdraw a gateway whose DNS record is gone (called on the discovery thread)."""
        if self.loop is None:
            raise RuntimeError("the balancer's loop is not running yet")
        asyncio.run_coroutine_threadsafe(self.withdraw(name, allow_last), self.loop).result(DRAIN_SECONDS + 5)

    # ---------------------------------------------------------------- routes
    # Admin routes check the token before these run (see create_app), so a caller without it learns nothing more.
    @api.validate(resp=responses(HTTP_200=BalancerHealth), tags=["operations"])
    async def health(self, request: web.Request) -> web.Response:
        return _json({
            "status": "ok", "service": "load-balancer", "instance": self.config.instance,
            "uptime_seconds": round(time.time() - self.started, 3),
            "healthy_backends": sum(b.healthy for b in self.tier.pool.backends()),
        })  # fmt: skip

    @api.validate(resp=responses(HTTP_200=(None, "Prometheus text format")), tags=["operations"])
    async def metrics_route(self, request: web.Request) -> web.Response:
        body, content_type = exposition(self.registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    @api.validate(resp=responses((401,), HTTP_200=ControlView), security=ADMIN, tags=["operations"])
    async def control_get(self, request: web.Request) -> web.Response:
        return _json({"instance": self.config.instance, "knobs": self.knobs.snapshot()})

    @api.validate(
        json=KnobChanges, resp=responses((400, 401, 413), HTTP_200=ControlChange), security=ADMIN, tags=["operations"]
    )
    async def control_put(self, request: web.Request) -> web.Response:
        changed = self.knobs.update(validated(request, "json").root)
        log.info("control: changed %s", changed)
        return _json({"instance": self.config.instance, "changed": changed, "knobs": self.knobs.values()})

    @api.validate(resp=responses(HTTP_200=PoolStatus), tags=["pool"])
    async def status(self, request: web.Request) -> web.Response:
        return _json(self.tier.pool.snapshot())

    @api.validate(json=NewBackend, resp=responses((400, 401, 409, 413), HTTP_201=Added), security=ADMIN, tags=["pool"])
    async def add_backend(self, request: web.Request) -> web.Response:
        spec = validated(request, "json").model_dump()
        check_gateway(spec)
        backend = self.tier.add_backend(spec)
        return _json({"added": backend.name, "url": backend.url}, 201)

    @api.validate(resp=responses((401, 404, 409), HTTP_200=Removed), security=ADMIN, tags=["pool"])
    async def remove_backend(self, request: web.Request) -> web.Response:
        backend = await self.withdraw(request.match_info["name"])
        return _json({"removed": backend.name})

    async def openapi(self, request: web.Request) -> web.Response:
        """Return the balancer's API document: its own routes and the gateways' it passes on."""
        return _json(merged(with_knobs(api.spec, self.knobs), await self.gateway_doc.get()))

    def observed(self, route: str, handler: Handler, admin: bool = False) -> Handler:
        """Wrap ``handler``: refuse foreign Hosts and Origins, time it for the metrics, turn every error into JSON.

        ``admin`` routes also need the admin token, checked before anything else about the request.

        A wrapper rather than an aiohttp middleware, which would cost more for the same.
        """

        allowed = self.allowed_hosts

        async def wrapper(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                refused = refusal(request.method, request.headers, allowed)
                if refused is not None:
                    raise ApiError(403, refused)
                if admin:
                    self.admin(request)
                response = await handler(request)
            except ApiError as exc:
                response = _json(exc.body(), exc.status)
            except web.HTTPException as exc:
                response = _json(error_body(exc.status, exc.reason), exc.status)
            except Exception:
                log.exception("unhandled error")
                response = _json(error_body(500, CRASH_MESSAGE), 500)
            # (HttpMetrics counts a method outside the standard ones as "other".)
            self.metrics.observe(route, request.method, response.status, time.perf_counter() - started)
            return response

        wrapper.__wrapped__ = handler  # type: ignore[attr-defined]  # how the API document finds the route's models
        return wrapper


def _gateways(entries: list[str]) -> list[tuple[str, str]]:
    """Return the configured gateways as ``(name, url)``; raise ConfigError for one the balancer cannot use."""
    gateways = parse_backends(entries, "BALANCER_BACKENDS")
    for name, url in gateways:
        try:
            check_gateway_name(name)
            gateway_address(url)
        except ValueError as exc:
            raise ConfigError(f"BALANCER_BACKENDS: {name}={url}: {exc}") from None
    return gateways


BALANCER = web.AppKey("balancer", Balancer)
# The balancer's own routes: method, path, the Balancer method that serves it, whether it needs the
# admin token. Every other request goes to a gateway (services/balancer/listener.py).
OWN_ROUTES = (
    ("GET", "/health", "health", False),
    ("GET", "/metrics", "metrics_route", False),
    ("GET", "/openapi.json", "openapi", False),
    ("GET", "/control", "control_get", True),
    ("PUT", "/control", "control_put", True),
    ("GET", "/lb/status", "status", False),
    ("POST", "/lb/backends", "add_backend", True),
    ("DELETE", "/lb/backends/{name}", "remove_backend", True),
)


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> web.Application:
    """Build the balancer from the environment (``overrides`` win, for tests)."""
    config = load_config(BalancerConfig, overrides)
    configure_logging(config, "load-balancer")
    balancer = Balancer(config, registry or CollectorRegistry())
    # A request line long enough for the longest key the gateways take (1024 characters, up to 12 bytes each
    # once percent-encoded): aiohttp's own limit (8190 bytes) would refuse it with a plain-text 400.
    app = web.Application(
        client_max_size=config.max_body_bytes,
        handler_args={"max_line_size": MAX_TARGET_BYTES, "max_field_size": MAX_HEADER_BYTES},
    )
    app[BALANCER] = balancer
    for method, path, name, admin in OWN_ROUTES:
        app.router.add_route(method, path, balancer.observed(path, getattr(balancer, name), admin))
    api.register(app)
    app.on_startup.append(balancer.proxy.open)
    app.on_startup.append(balancer.start_health_checks)
    app.on_cleanup.append(balancer.stop_health_checks)
    app.on_cleanup.append(balancer.proxy.close)
    return app
