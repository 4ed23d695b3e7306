"""Load shedding and rate limiting: refuse work early, when the answer is still cheap.

Past its capacity a service that takes every request slows every request down together: the
queue grows, each request waits behind it, and past the clients' deadlines the work done is
wasted. Refusing the excess at once keeps the admitted requests fast and the goodput near
capacity. Three tactics, each a knob:

* **a token bucket per client** (the token's subject): ``client_rate_limit`` requests a second
  with bursts of ``client_burst``; the excess gets 429 and a ``Retry-After`` of when a token is due;
* **a fixed concurrency limit**: at most ``max_in_flight`` requests at once in this instance, the
  rest get 503 and ``Retry-After``;
* **an adaptive concurrency limit** in the spirit of TCP Vegas and Netflix's concurrency-limits:
  the limit follows the latency. With the no-load latency ``rtt0`` and a request's latency
  ``rtt``, about ``limit * (1 - rtt0 / rtt)`` requests are queued somewhere below; the limit grows
  while that queue is short and shrinks once it is long, so it settles where the dependency is
  busy but hardly queues. ``max_in_flight`` is its ceiling.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache
from prometheus_client import CollectorRegistry, Counter, Gauge

from .errors import ApiError

__all__ = ["ADAPTIVE", "FIXED", "MODES", "OFF", "AdaptiveLimit", "Shedder", "Ticket", "TokenBuckets"]

OFF, FIXED, ADAPTIVE = MODES = ("off", "fixed", "adaptive")
# What a request refused for want of room is told: the in-flight requests end within a second or so.
SHED_RETRY_AFTER_SECONDS = 1
# Where an adaptive limit starts: low enough that its first requests queue nowhere.
INITIAL_LIMIT = 4.0
# Clients remembered at once (an idle client's bucket is full again after burst / rate seconds anyway).
MAX_CLIENTS = 10_000


class TokenBuckets:
    """One token bucket per client: ``rate`` tokens a second, holding at most ``burst``."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        # client -> (tokens, when counted); a client idle for a minute starts again with a full bucket.
        self._buckets: TTLCache[str, tuple[float, float]] = TTLCache(MAX_CLIENTS, ttl=60, timer=clock)

    def configure(self, rate: float | None = None, burst: float | None = None) -> None:
        """Change the rate or the burst; buckets keep their tokens (up to the new burst)."""
        with self._lock:
            if rate is not None:
                self.rate = rate
            if burst is not None:
                self.burst = burst

    def take(self, client: str) -> float:
        """Take a token for ``client``: return 0 when it had one, else the seconds until it will."""
        with self._lock:
            now = self._clock()
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate > 0 else math.inf


class AdaptiveLimit:
    """A concurrency limit that follows latency (the Vegas rule of Netflix's concurrency-limits).

    Each finished request reports its latency. The lowest latency seen is the no-load latency;
    ``queued = limit * (1 - rtt0 / rtt)`` estimates the requests waiting below. With
    ``l = log10(limit)``: at most ``l`` queued, the limit grows by ``6 l``; below ``3 l`` it grows
    by ``l``; above ``6 l`` it shrinks by ``l``; a failed request shrinks it too. It grows only
    while at least half of it is in use. It starts small (:data:`INITIAL_LIMIT`), so its first
    requests see no queue and measure the true no-load latency; every ``probe_every`` samples it
    starts small again and measures anew, so a dependency that got slower for good resets the baseline.
    """

    def __init__(self, ceiling: float, now: float, probe_every: int = 1000) -> None:
        self.limit = min(INITIAL_LIMIT, ceiling)
        self.measured_from = now  # requests admitted before this waited under another limit
        self.ceiling = ceiling
        self.rtt0 = 0.0
        self.probe_every = probe_every
        self._samples = 0

    def sample(self, started: float, now: float, in_flight: int, failed: bool) -> None:
        """Adjust the limit after a request admitted at ``started`` ended at ``now``, ``in_flight`` in flight."""
        self._samples += 1
        if self._samples % self.probe_every == 0:
            self.rtt0 = 0.0
            self.limit = min(INITIAL_LIMIT, self.ceiling)
            self.measured_from = now
        rtt = now - started
        if rtt <= 0:
            return
        if failed:
            self._set(self.limit - max(1.0, math.log10(self.limit)))
            return
        if self.rtt0 == 0:
            # A baseline only from a short queue: a request admitted under the old, higher limit waited in it.
            if started >= self.measured_from:
                self.rtt0 = rtt
            return
        if rtt < self.rtt0:
            self.rtt0 = rtt
            return
        if in_flight * 2 < self.limit:  # the limit is not what holds the load back: no reason to grow it
            return
        step = max(1.0, math.log10(self.limit))
        queued = self.limit * (1 - self.rtt0 / rtt)
        if queued <= step:
            self._set(self.limit + 6 * step)
        elif queued < 3 * step:
            self._set(self.limit + step)
        elif queued > 6 * step:
            self._set(self.limit - step)

    def _set(self, limit: float) -> None:
        self.limit = max(1.0, min(self.ceiling, limit))


@dataclass(frozen=True)
class Ticket:
    """An admitted request: when it started."""

    started: float


class Shedder:
    """Admission for one instance's client requests: per-client rate, then a fixed or adaptive concurrency limit."""

    def __init__(
        self,
        instance: str,
        mode: str,
        max_in_flight: int,
        client_rate: float,
        client_burst: float,
        registry: CollectorRegistry | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.instance = instance
        self.mode = mode
        self.max_in_flight = max_in_flight
        self.buckets = TokenBuckets(client_rate, client_burst, clock)
        self.adaptive = AdaptiveLimit(max_in_flight, clock())
        self.in_flight = 0
        self.shed = 0
        self._clock = clock
        self._lock = threading.Lock()
        self.admitted_total = Counter(
            "scalelab_admitted", "Client requests admitted past rate limiting and load shedding.", registry=registry
        )
        self.shed_total = Counter(
            "scalelab_shed",
            "Client requests refused early: client_rate (429, the client's token bucket was empty) "
            "or concurrency (503, the fixed or adaptive limit was reached).",
            ["reason"],
            registry=registry,
        )
        for reason in ("client_rate", "concurrency"):
            self.shed_total.labels(reason)
        Gauge(
            "scalelab_concurrency_limit", "Requests this instance admits at once now (0: no limit).", registry=registry
        ).set_function(self.limit)

    def configure(
        self,
        mode: str | None = None,
        max_in_flight: float | None = None,
        client_rate: float | None = None,
        client_burst: float | None = None,
    ) -> None:
        """Change a knob; switching to adaptive starts its limit small again."""
        with self._lock:
            if max_in_flight is not None:
                self.max_in_flight = max_in_flight
                self.adaptive.ceiling = max_in_flight
                self.adaptive.limit = min(self.adaptive.limit, max_in_flight)
            if mode is not None and mode != self.mode:
                self.mode = mode
                self.adaptive = AdaptiveLimit(self.max_in_flight, self._clock())
        self.buckets.configure(client_rate, client_burst)

    def limit(self) -> int:
        """Return how many requests are admitted at once now (0: no limit)."""
        if self.mode == FIXED:
            return int(self.max_in_flight)
        if self.mode == ADAPTIVE:
            return int(self.adaptive.limit)
        return 0

    def admit(self, client: str) -> Ticket:
        """Admit a request of ``client`` or raise the 429 or 503 ApiError (with Retry-After) that refuses it."""
        if self.buckets.rate > 0:
            wait = self.buckets.take(client)
            if wait:
                self._refused("client_rate")
                retry_after = max(1, math.ceil(wait)) if math.isfinite(wait) else 60
                raise ApiError(
                    429,
                    f"{self.instance}: client {client!r} sent more than {self.buckets.rate:g} requests a second "
                    f"(bursts of {self.buckets.burst:g}; knobs client_rate_limit, client_burst); "
                    f"retry after {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
        with self._lock:
            limit = self.limit()
            if limit and self.in_flight >= limit:
                full = True
            else:
                self.in_flight += 1
                full = False
        if full:
            self._refused("concurrency")
            raise ApiError(
                503,
                f"{self.instance} is shedding load: {limit} requests already in flight ({self.mode} concurrency "
                f"limit; knobs shedding, max_in_flight); retry after {SHED_RETRY_AFTER_SECONDS} s",
                headers={"Retry-After": str(SHED_RETRY_AFTER_SECONDS)},
            )
        self.admitted_total.inc()
        return Ticket(self._clock())

    def done(self, ticket: Ticket, status: int) -> None:
        """Give the request's slot back; its latency and status teach the adaptive limit."""
        now = self._clock()
        with self._lock:
            in_flight = self.in_flight
            self.in_flight -= 1
            if self.mode == ADAPTIVE:
                # A 503 or 504 from below says the dependency is overloaded; a 4xx is the client's own.
                self.adaptive.sample(ticket.started, now, in_flight, failed=status in (503, 504))

    def _refused(self, reason: str) -> None:
        with self._lock:
            self.shed += 1
        self.shed_total.labels(reason).inc()

    def state(self) -> dict[str, object]:
        """Return the admission state for /health: mode, limit, in flight, requests shed so far."""
        with self._lock:
            return {
                "mode": self.mode,
                "limit": self.limit(),
                "in_flight": self.in_flight,
                "shed": self.shed,
                "client_rate_limit": self.buckets.rate,
            }
