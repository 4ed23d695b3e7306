"""The balancer's hop: forward one request to a healthy gateway, failing over when that is safe.

This hop is asyncio rather than Flask: a Flask hop spends as much CPU per request as a gateway
does, and the balancer must cost little next to nginx (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import NamedTuple

from ..kit import NoHealthyBackend, retryable
from ..kit.deadline import Deadline
from ..kit.listener import CONNECTION_HEADERS
from ..kit.pool import IDEMPOTENT_METHODS, Backend
from ..kit.tier import BalancedTier, no_backend_error
from ..kit.upstream import Upstream, UpstreamError, UpstreamResponse
from .inputs import gateway_address

__all__ = ["HOP_BY_HOP", "RESPONSE_SKIP", "Forwarded", "Proxy"]

log = logging.getLogger(__name__)

# The client's connection headers (the kit's listener keeps them out of the request), plus the ones
# the proxy sets itself.
HOP_BY_HOP = CONNECTION_HEADERS | {b"x-forwarded-for"}
# The gateway's Date stands (a proxy passes it on); its Server says nothing a client needs.
RESPONSE_SKIP = HOP_BY_HOP | {b"server"}
# A gateway builds its document once and answers at once after that.
DOCUMENT_TIMEOUT_SECONDS = 2.0


class Proxy:
    """Forwards requests over keep-alive connections to the tier's backends."""

    def __init__(self, tier: BalancedTier, upstream_timeout: float, connect_timeout: float) -> None:
        self.tier = tier
        self._timeout = upstream_timeout
        self._connect_timeout = connect_timeout
        self._upstreams: dict[str, Upstream] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        tier.pool.on_transition(self._on_transition)

    async def open(self, _app: object = None) -> None:
        """Remember the event loop, for health changes reported from the checker's threads."""
        self._loop = asyncio.get_running_loop()

    def _on_transition(self, backend: Backend, healthy: bool) -> None:
        if healthy or self._loop is None or backend.name not in self._upstreams:
            return
        self._loop.call_soon_threadsafe(self._abort, backend.name)

    def _abort(self, name: str) -> None:
        upstream = self._upstreams.get(name)
        if upstream is None:  # removed since the checker saw it go down
            return
        cut = upstream.abort_in_flight()
        if cut:
            log.warning("%s is down: moved %d request(s) in flight to other gateways where safe", name, cut)

    def _upstream(self, backend: Backend) -> Upstream:
        upstream = self._upstreams.get(backend.name)
        if upstream is None:
            host, port = gateway_address(backend.url)  # checked when the gateway was configured or added
            upstream = Upstream(host, port, self._connect_timeout, self._timeout)
            if not backend.removed:  # one picked just before its removal must not come back into the dict
                self._upstreams[backend.name] = upstream
        return upstream

    def forget(self, name: str) -> None:
        """Drop a removed backend's connections, cutting requests still waiting on it (idempotent ones move on)."""
        upstream = self._upstreams.pop(name, None)
        if upstream is None:
            return
        cut = upstream.abort_in_flight()  # also closes its idle connections
        if cut:
            log.warning("%s was removed: moved %d request(s) still in flight to other gateways where safe", name, cut)

    async def gateway_document(self) -> bytes | None:
        """Return the body of a healthy gateway's ``/openapi.json``, or None when no gateway gives one."""
        for backend in self.tier.pool.backends():
            if not backend.healthy:
                continue
            try:
                answer = await self._upstream(backend).request(
                    "GET", "/openapi.json", [(b"Accept", b"application/json")], b"", True, DOCUMENT_TIMEOUT_SECONDS
                )
            except UpstreamError:
                continue
            if answer.status == 200:
                return answer.body
        return None

    async def close(self, _app: object = None) -> None:
        """Close every idle upstream connection."""
        for upstream in self._upstreams.values():
            upstream.close()

    async def forward(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        client: str,
        deadline_header: str | None,
    ) -> Forwarded:
        """Forward a request to a healthy gateway and return its answer, or raise a 502/503/504 ApiError.

        ``headers`` are the client's, less the hop-by-hop ones; ``client`` is its address, for
        X-Forwarded-For. The request's deadline is the upstream timeout from now, or the client's
        own X-Request-Deadline (``deadline_header``) when sooner; the gateway gets it less a hop
        margin, so a slow hop behind it is reported by the gateway (a 504 naming it) before this
        wait ends.
        """
        pool = self.tier.pool
        idempotent = method in IDEMPOTENT_METHODS
        deadline = Deadline.from_header(deadline_header, self._timeout, setting="SCALELAB_UPSTREAM_TIMEOUT")
        sent = list(headers)
        sent.append((b"X-Forwarded-For", client.encode()))
        sent.extend((k.encode(), v.encode()) for k, v in deadline.headers().items())
        last_error = ""
        try:
            for backend in pool.attempts():
                timeout = deadline.timeout(self._timeout, "a gateway")  # a 504 once failover has used it up
                pool.begin(backend)
                try:
                    answer = await self._upstream(backend).request(method, target, sent, body, idempotent, timeout)
                except UpstreamError as exc:
                    pool.end(backend, exc.failure.value)
                    pool.report_failure(backend, exc.failure, str(exc))
                    last_error = f"{backend.name}: {exc.failure.value} ({exc})"
                    if deadline.expired():
                        raise deadline.exceeded(backend.name) from None
                    if retryable(exc.failure, method):
                        continue
                    break
                pool.end(backend, answer.status)
                return Forwarded(answer, backend.name)
        except NoHealthyBackend:
            raise no_backend_error(pool) from None
        raise no_backend_error(pool, last_error)


class Forwarded(NamedTuple):
    """A gateway's answer, and which gateway gave it."""

    answer: UpstreamResponse
    backend: str
