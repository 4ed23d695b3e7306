"""The balancer's listener: clients' requests read by the kit's listener, proxied to the gateways.

The proxy path needs none of aiohttp's server (see services/kit/listener.py): it reads a
buffered request, forwards it and writes a buffered answer. Only the balancer's own routes
(/health, /metrics, /control, /lb/*, /openapi.json) go on to its aiohttp app, over a loopback
connection to a site only this process knows; they keep aiohttp's validation and API document.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterable
from urllib.parse import unquote

from aiohttp import web

from ..kit import ApiError, error_body
from ..kit.listener import Answer, HttpListener, Request, error_answer
from ..kit.origin import refusal
from ..kit.upstream import Upstream, UpstreamError
from .app import BALANCER, CRASH_MESSAGE, OWN_ROUTES, Balancer
from .proxy import HOP_BY_HOP, RESPONSE_SKIP

__all__ = ["Listener", "OwnRoutes"]

log = logging.getLogger(__name__)

# A HEAD answer has no body to measure: the gateway's Content-Length says what a GET would get.
HEAD_SKIP = RESPONSE_SKIP - {b"content-length"}


class OwnRoutes:
    """Which requests are the balancer's own (app.OWN_ROUTES), matched as aiohttp's router would."""

    def __init__(self, routes: Iterable[tuple[str, str, str, bool]]) -> None:
        self._exact: set[tuple[str, str]] = set()
        self._patterns: list[tuple[str, re.Pattern[str], str]] = []
        for method, path, _handler, _admin in routes:
            if "{" in path:
                self._patterns.append((method, re.compile(re.sub(r"\{\w+\}", "[^{}/]+", path)), path))
            else:
                self._exact.add((method, path))

    def match(self, method: str, target: str) -> str | None:
        """Return the route (``/lb/backends/{name}``) that ``method`` on ``target`` (a path and its query) is, or None
        when it is not one of the balancer's own."""
        path = target.partition("?")[0]
        if "%" in path:
            path = unquote(path)
        if (method, path) in self._exact:
            return path
        return next((route for m, pattern, route in self._patterns if m == method and pattern.fullmatch(path)), None)


class Listener(HttpListener):
    """Serve the balancer: its proxy path here, its own routes through its aiohttp app."""

    # The proxy sets X-Forwarded-For itself: a client's own would be taken for the truth.
    dropped = HOP_BY_HOP

    def __init__(self, app: web.Application) -> None:
        self.balancer: Balancer = app[BALANCER]
        super().__init__(
            self.balancer.config.max_body_bytes, "send less, or raise SCALELAB_MAX_BODY_BYTES for the load balancer"
        )
        self.own = OwnRoutes(OWN_ROUTES)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        self._admin: Upstream | None = None

    async def open(self) -> None:
        """Start the app (health checks, the proxy) on a loopback port of its own."""
        await self._runner.setup()
        inner = socket.socket()
        inner.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, inner).start()
        config = self.balancer.config
        # Removing a gateway waits for its requests in flight: the own routes get that long and more.
        self._admin = Upstream(
            "127.0.0.1", inner.getsockname()[1], config.connect_timeout, config.upstream_timeout + 10, own_host=False
        )

    async def closed(self) -> None:
        """Stop the app (its health checks) once the clients are gone."""
        if self._admin is not None:
            self._admin.close()
        await self._runner.cleanup()

    async def answer(self, request: Request, client: str) -> Answer:
        """Return the status, headers and body that answer ``request`` from ``client``."""
        method = request.method
        started = time.perf_counter()
        route = self.own.match(method, request.target)
        if route is not None:
            # Checked here too, though the app checks again (its port can be reached directly): aiohttp
            # would refuse a missing Host in plain text before the app's check.
            refused = self.refusal(request)
            if refused is None:
                return await self._own(request)  # the app counts and times it
            status, headers, body = error_answer(403, error_body(403, refused))
            self.balancer.metrics.observe(route, method, status, time.perf_counter() - started)
            return status, headers, body
        try:
            status, headers, body = await self._proxied(request, client)
        except ApiError as exc:
            status, headers, body = error_answer(exc.status, exc.body(), exc.headers)
        except Exception:
            log.exception("unhandled error")
            status, headers, body = error_answer(500, error_body(500, CRASH_MESSAGE))
        self.balancer.metrics.observe("proxy", method, status, time.perf_counter() - started)
        return status, headers, body

    def refused(self, method: str, status: int) -> None:
        """Count a request refused as it was read, as a request no route matches."""
        self.balancer.metrics.observe("unmatched", method, status, 0.0)

    def refusal(self, request: Request) -> str | None:
        """Return why ``request`` must be refused with 403 (its Host, or its Origin for a change), or None."""
        seen = {"Host": request.host, "Origin": request.origin, "Referer": request.referer}
        return refusal(request.method, seen, self.balancer.allowed_hosts)

    async def _proxied(self, request: Request, client: str) -> Answer:
        refused = self.refusal(request)
        if refused is not None:
            raise ApiError(403, refused)
        forwarded = await self.balancer.proxy.forward(
            request.method, request.target, request.headers, request.body, client, request.deadline
        )
        answer = forwarded.answer
        skip = HEAD_SKIP if request.head_only else RESPONSE_SKIP
        headers = [(k, v) for k, v in answer.headers if k.lower() not in skip]
        headers.append((b"X-Served-By", forwarded.backend.encode()))
        return answer.status, headers, answer.body

    async def _own(self, request: Request) -> Answer:
        """Pass one of the balancer's own routes to its app, with the client's Host, Origin and headers."""
        assert self._admin is not None
        headers = request.headers
        if request.host is not None:
            headers = [(b"Host", request.host.encode("latin-1")), *headers]
        try:
            answer = await self._admin.request(request.method, request.target, headers, request.body, idempotent=False)
        except UpstreamError as exc:
            log.error("the balancer's own routes did not answer: %s", exc)
            return error_answer(500, error_body(500, CRASH_MESSAGE))
        headers = [(k, v) for k, v in answer.headers if k.lower() not in RESPONSE_SKIP]
        if answer.status >= 400 and not any(
            k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers
        ):
            # aiohttp's own refusals (a request it cannot parse) are plain text: every error of the lab is JSON.
            message = answer.body.decode("utf-8", "replace").strip()[:200] or f"status {answer.status}"
            return error_answer(answer.status, error_body(answer.status, message))
        return answer.status, headers, answer.body
