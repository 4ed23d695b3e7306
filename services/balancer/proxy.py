"""The balancer's hop: forward one request to a healthy gateway, failing over when that is safe.

This hop is asyncio (aiohttp) rather than Flask: a Flask hop spends as much CPU per request
as a gateway does, and the balancer must cost little next to nginx (see the README's figures).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ..kit import Failure, NoHealthyBackend, retryable
from ..kit.tier import BalancedTier, no_backend_error

__all__ = ["HOP_BY_HOP", "Proxy"]

# Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
# ones aiohttp sets itself on the way out.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "transfer-encoding", "upgrade", "host", "content-length"}
)  # fmt: skip
RESPONSE_SKIP = HOP_BY_HOP | {"date", "server"}


def classify(exc: BaseException) -> Failure:
    """Map an aiohttp client error to how the request failed."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure.CONNECT
    if isinstance(exc, asyncio.TimeoutError):
        return Failure.TIMEOUT
    return Failure.BROKEN


class Proxy:
    """Forwards requests over keep-alive connections to the tier's backends."""

    def __init__(self, tier: BalancedTier, upstream_timeout: float, connect_timeout: float) -> None:
        self.tier = tier
        self._timeout = aiohttp.ClientTimeout(total=upstream_timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def open(self, _app: web.Application | None = None) -> None:
        """Create the client session (inside the running event loop)."""
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, use_dns_cache=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )

    async def close(self, _app: web.Application | None = None) -> None:
        """Close the client session and its connections."""
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` and return the backend's answer, or raise a 502/503 ApiError."""
        assert self._session is not None, "Proxy.open() was not awaited"
        pool = self.tier.pool
        method = request.method
        body = await request.read() if request.body_exists else None
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP)
        headers["X-Forwarded-For"] = request.remote or ""
        last_error = ""
        try:
            for backend in pool.attempts():
                pool.begin(backend)
                try:
                    url = URL(backend.url + request.raw_path, encoded=True)
                    async with self._session.request(
                        method, url, headers=headers, data=body, allow_redirects=False
                    ) as upstream:
                        payload = await upstream.read()
                except (TimeoutError, aiohttp.ClientError) as exc:
                    failure = classify(exc)
                    pool.end(backend, failure.value)
                    pool.report_failure(backend, failure, str(exc) or type(exc).__name__)
                    last_error = f"{backend.name}: {failure.value} ({exc or type(exc).__name__})"
                    if retryable(failure, method):
                        continue
                    break
                pool.end(backend, upstream.status)
                out = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in RESPONSE_SKIP)
                out["X-Served-By"] = backend.name
                return web.Response(status=upstream.status, body=payload, headers=out)
        except NoHealthyBackend:
            raise no_backend_error(pool) from None
        raise no_backend_error(pool, last_error)
