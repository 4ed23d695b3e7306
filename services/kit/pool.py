"""The backend pool: which backends exist, which are healthy, and which one serves the next request.

One implementation serves both tiers: the load balancer's pool of gateways (asyncio) and each
gateway's pool of microservices (threads). The pool holds state and decisions only; the callers
do the I/O and report back through :meth:`Pool.begin`, :meth:`Pool.end` and the failure reports.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .algorithms import Algorithm, make_algorithm
from .breaker import BREAKER_STATES, CLOSED, Breaker, BreakerPolicy
from .health import HealthPolicy, HealthState

__all__ = ["IDEMPOTENT_METHODS", "Backend", "Failure", "NoHealthyBackend", "Pool", "retryable"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class NoHealthyBackend(RuntimeError):
    """Every backend of the pool is down (or was already tried for this request)."""

    def __init__(self, pool: str, backends: Iterable[str]) -> None:
        names = ", ".join(backends) or "none configured"
        super().__init__(f"no healthy backend in pool {pool!r} (backends: {names})")
        self.pool = pool


class Failure(enum.Enum):
    """How a request to a backend failed, which decides whether it may go to another one."""

    CONNECT = "connect"  # never reached the backend: always safe to retry
    BROKEN = "broken"  # the connection died mid-request: retry only idempotent requests
    TIMEOUT = "timeout"  # no answer in time: retry only idempotent requests


def retryable(failure: Failure, method: str) -> bool:
    """Return whether a request that failed this way may be sent to another backend."""
    return failure is Failure.CONNECT or method.upper() in IDEMPOTENT_METHODS


@dataclass(eq=False)
class Backend:
    """One instance behind a pool and what the pool knows of it."""

    name: str
    url: str
    weight: int = 1
    health: HealthState = field(default_factory=lambda: HealthState(rise=2, fall=2))
    in_flight: int = 0
    served: int = 0
    changed_at: float = field(default_factory=time.time)
    last_check_latency: float | None = None
    last_check_ok: bool | None = None
    last_error: str | None = None
    removed: bool = False
    breaker: Breaker = field(default_factory=lambda: Breaker(BreakerPolicy()))

    @property
    def healthy(self) -> bool:
        return self.health.healthy


class Pool(Collector):
    """Backends, their health, and the algorithm that picks among the healthy ones."""

    def __init__(
        self,
        name: str,
        backends: Iterable[tuple[str, str]],
        algorithm: str = "round_robin",
        policy: HealthPolicy | None = None,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.policy = policy or HealthPolicy()
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._backends: list[Backend] = []
        self._healthy: list[Backend] = []
        self.algorithm_name = algorithm
        self._algorithm: Algorithm = make_algorithm(algorithm, self._rng)
        self._requests: dict[tuple[str, str], int] = {}
        self._retries: dict[str, int] = {}
        self._transitions: dict[tuple[str, str], int] = {}
        self._listeners: list[Callable[[Backend, bool], None]] = []
        # Shared by every backend's breaker, so a knob change reaches them all at once.
        self.breaker_policy = BreakerPolicy()
        self._breaking = False  # some breaker is not closed: choose() must ask them
        self._breaker_changes: dict[tuple[str, str], int] = {}
        for backend_name, url in backends:
            self.add(backend_name, url)
        if registry is not None:
            registry.register(self)

    # ---------------------------------------------------------------- membership
    def add(self, name: str, url: str, weight: int = 1) -> Backend:
        """Add a backend (healthy until a check or a failed connection says otherwise)."""
        backend = Backend(
            name=name,
            url=url.rstrip("/"),
            weight=weight,
            health=HealthState(rise=self.policy.rise, fall=self.policy.fall),
            changed_at=self._clock(),
            breaker=Breaker(self.breaker_policy),
        )
        with self._lock:
            if any(existing.name == name for existing in self._backends):
                raise ValueError(f"pool {self.name!r} already has a backend named {name!r}")
            self._backends.append(backend)
            self._refresh()
        return backend

    def remove(self, name: str) -> None:
        """Remove a backend; its health checks stop after the current one."""
        with self._lock:
            backend = self.get(name)
            backend.removed = True
            self._backends.remove(backend)
            self._refresh()

    def get(self, name: str) -> Backend:
        """Return the backend called ``name``; raise KeyError naming the known ones otherwise."""
        for backend in self._backends:
            if backend.name == name:
                return backend
        raise KeyError(f"pool {self.name!r} has no backend {name!r}; it has {[b.name for b in self._backends]}")

    def backends(self) -> list[Backend]:
        """Return every backend, healthy or not."""
        return list(self._backends)

    def on_transition(self, listener: Callable[[Backend, bool], None]) -> None:
        """Call ``listener(backend, healthy)`` whenever a backend goes up or down."""
        self._listeners.append(listener)

    def _refresh(self) -> None:
        self._healthy = [backend for backend in self._backends if backend.healthy]

    # ---------------------------------------------------------------- choosing
    def set_algorithm(self, name: str) -> None:
        """Switch the balancing algorithm; requests already in flight are not affected."""
        algorithm = make_algorithm(name, self._rng)
        with self._lock:
            self._algorithm = algorithm
            self.algorithm_name = name

    def set_weight(self, name: str, weight: int) -> None:
        """Set a backend's weight for weighted round robin."""
        if weight < 0:
            raise ValueError("a weight cannot be negative")
        self.get(name).weight = weight

    def choose(self, exclude: Iterable[Backend] = ()) -> Backend:
        """Return the backend for the next request, skipping ``exclude``; raise NoHealthyBackend."""
        with self._lock:
            candidates = self._healthy
            if exclude:
                skip = set(map(id, exclude))
                candidates = [backend for backend in candidates if id(backend) not in skip]
            if self._breaking:
                now = self._clock()
                candidates = [backend for backend in candidates if backend.breaker.allows(now)]
            if not candidates:
                raise NoHealthyBackend(self.name, [backend.name for backend in self._backends])
            picked = self._algorithm.choose(candidates)
            picked.breaker.picked()
            return picked

    def attempts(self, limit: int | None = None, retry: Callable[[int], bool] | None = None) -> Iterator[Backend]:
        """Yield a different healthy backend for each attempt of one request.

        The first attempt raises NoHealthyBackend when none is healthy; later attempts just
        end when no untried healthy backend is left, or when ``retry(n)`` (asked before retry
        number n, before a backend is picked for it) says no.
        """
        tried: list[Backend] = []
        limit = limit or max(1, len(self._backends))
        while len(tried) < limit:
            if tried and retry is not None and not retry(len(tried)):
                return
            try:
                backend = self.choose(exclude=tried)
            except NoHealthyBackend:
                if not tried:
                    raise
                return
            if tried:
                self._count(self._retries, backend.name)
            tried.append(backend)
            yield backend

    # ---------------------------------------------------------------- accounting
    def begin(self, backend: Backend) -> None:
        """Count a request as in flight on ``backend``."""
        with self._lock:
            backend.in_flight += 1

    def end(self, backend: Backend, status: int | str) -> None:
        """Count a finished request (``status`` is the HTTP status or a failure name)."""
        with self._lock:
            backend.in_flight -= 1
            backend.served += 1
            key = (backend.name, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            # A 5xx or no answer at all counts against the backend's breaker.
            if backend.breaker.record(isinstance(status, int) and status < 500, self._clock()):
                self._breaker_changed(backend)

    def set_breaker(self, failures: int | None = None, cooldown: float | None = None) -> None:
        """Change when breakers open (``failures`` in a row; 0 switches them off and closes them) and for how long."""
        with self._lock:
            if failures is not None:
                self.breaker_policy.failures = failures
            if cooldown is not None:
                self.breaker_policy.cooldown = cooldown
            if not self.breaker_policy.failures:
                for backend in self._backends:
                    if backend.breaker.state != CLOSED:
                        backend.breaker.reset()
                        self._breaker_changed(backend)

    def _breaker_changed(self, backend: Backend) -> None:
        """Count a breaker's change and note whether choose() must ask the breakers (call under the lock)."""
        key = (backend.name, backend.breaker.state)
        self._breaker_changes[key] = self._breaker_changes.get(key, 0) + 1
        self._breaking = any(b.breaker.state != CLOSED for b in self._backends)

    def _count(self, counts: dict[Any, int], key: Any) -> None:
        with self._lock:
            counts[key] = counts.get(key, 0) + 1

    # ---------------------------------------------------------------- health
    def report_check(self, backend: Backend, ok: bool, latency: float, error: str | None = None) -> None:
        """Record an active health check result."""
        backend.last_check_latency = latency
        backend.last_check_ok = ok
        if error:
            backend.last_error = error
        with self._lock:
            changed = backend.health.record(ok)
        if changed:
            self._transition(backend)

    def report_failure(self, backend: Backend, failure: Failure, error: str) -> None:
        """Record a failed request; a connection that could not be made takes the backend down at once."""
        backend.last_error = f"{failure.value}: {error}"
        if failure is Failure.CONNECT:
            with self._lock:
                changed = backend.health.force_down()
            if changed:
                self._transition(backend)

    def _transition(self, backend: Backend) -> None:
        with self._lock:
            backend.changed_at = self._clock()
            self._refresh()
            key = (backend.name, "up" if backend.healthy else "down")
            self._transitions[key] = self._transitions.get(key, 0) + 1
        for listener in self._listeners:
            listener(backend, backend.healthy)

    # ---------------------------------------------------------------- views
    def snapshot(self) -> dict[str, Any]:
        """Return the pool's state for a status route: algorithm and each backend's health and load."""
        now = self._clock()
        return {
            "pool": self.name,
            "algorithm": self.algorithm_name,
            "health_check": {
                "interval_seconds": self.policy.interval,
                "timeout_seconds": self.policy.timeout,
                "fall": self.policy.fall,
                "rise": self.policy.rise,
            },
            "healthy": sum(backend.healthy for backend in self._backends),
            "backends": [
                {
                    "name": backend.name,
                    "url": backend.url,
                    "state": "healthy" if backend.healthy else "down",
                    "healthy": backend.healthy,
                    "weight": backend.weight,
                    "in_flight": backend.in_flight,
                    "requests_served": backend.served,
                    "last_check_ok": backend.last_check_ok,
                    "last_check_latency_ms": None
                    if backend.last_check_latency is None
                    else round(backend.last_check_latency * 1000, 2),
                    "last_change": backend.changed_at,
                    "seconds_in_state": round(now - backend.changed_at, 3),
                    "last_error": backend.last_error,
                    "breaker": self._breaker_state(backend, now),
                }
                for backend in self._backends
            ],
        }

    def _breaker_state(self, backend: Backend, now: float) -> str:
        """Return the breaker's state as of ``now`` (an open one past its cool-down reads half-open)."""
        with self._lock:
            backend.breaker.allows(now)  # moves an open breaker past its cool-down to half-open
            return backend.breaker.state

    def collect(self) -> Iterable[Any]:
        """Export per-backend metrics from the pool's counters at scrape time (nothing on the hot path)."""
        labels = ["pool", "backend"]
        up = GaugeMetricFamily("scalelab_backend_up", "1 if the pool counts the backend as healthy.", labels=labels)
        in_flight = GaugeMetricFamily("scalelab_backend_in_flight", "Requests in flight to the backend.", labels=labels)
        weight = GaugeMetricFamily("scalelab_backend_weight", "Weight for weighted round robin.", labels=labels)
        check = GaugeMetricFamily(
            "scalelab_backend_check_latency_seconds", "Duration of the last health check.", labels=labels
        )
        requests = CounterMetricFamily(
            "scalelab_backend_requests", "Requests sent to the backend, by status.", labels=[*labels, "status"]
        )
        retries = CounterMetricFamily(
            "scalelab_backend_retries", "Requests retried on this backend after another failed.", labels=labels
        )
        transitions = CounterMetricFamily(
            "scalelab_backend_health_transitions", "Backend health changes, by new state.", labels=[*labels, "to"]
        )
        breaker = GaugeMetricFamily(
            "scalelab_backend_breaker_state",
            "1 for the state the backend's circuit breaker is in.",
            labels=[*labels, "state"],
        )
        breaker_changes = CounterMetricFamily(
            "scalelab_backend_breaker_transitions", "Circuit breaker changes, by new state.", labels=[*labels, "to"]
        )
        with self._lock:
            for backend in self._backends:
                key = [self.name, backend.name]
                up.add_metric(key, 1.0 if backend.healthy else 0.0)
                in_flight.add_metric(key, backend.in_flight)
                weight.add_metric(key, backend.weight)
                if backend.last_check_latency is not None:
                    check.add_metric(key, backend.last_check_latency)
                retries.add_metric(key, self._retries.get(backend.name, 0))
                for state in ("up", "down"):
                    transitions.add_metric([*key, state], self._transitions.get((backend.name, state), 0))
                for state in BREAKER_STATES:
                    breaker.add_metric([*key, state], 1.0 if backend.breaker.state == state else 0.0)
                    breaker_changes.add_metric([*key, state], self._breaker_changes.get((backend.name, state), 0))
            for (backend_name, status), count in sorted(self._requests.items()):
                requests.add_metric([self.name, backend_name, status], count)
        yield from (up, in_flight, weight, check, requests, retries, transitions, breaker, breaker_changes)
