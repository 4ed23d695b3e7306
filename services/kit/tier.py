"""A balanced tier: a pool, its health checker, and its knobs (algorithm, weights) wired together.

The balancer (gateways) and each gateway (microservices) build one; the sync :meth:`request`
is the gateway's failover loop, the balancer has the same loop in asyncio.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from .algorithms import ALGORITHMS
from .deadline import Deadline
from .errors import ApiError
from .health import HealthChecker, Probe, http_probe
from .httpclient import HttpClient, Response, UpstreamError
from .inputs import shown
from .knobs import Knob, Knobs
from .pool import Backend, NoHealthyBackend, Pool, retryable
from .retrybudget import RetryBudget, backoff_seconds
from .settings import PoolSettings

__all__ = ["BACKEND_NAME", "DRAIN_POLL_SECONDS", "DRAIN_SECONDS", "MAX_WEIGHT", "WEIGHT_PREFIX", "BalancedTier"]

log = logging.getLogger(__name__)
WEIGHT_PREFIX = "weight."
MAX_WEIGHT = 100
# A backend's name becomes a knob name, a metric label and a path segment: keep it short and plain.
MAX_NAME_CHARS = 63
BACKEND_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_CHARS - 1}}}")
# How long removing a backend waits for the requests already sent to it to finish before it cuts
# them (idempotent ones then go to another backend). Well above a lab request's time, well below
# the 10 s upstream timeout, so an instance being stopped never takes an answer with it.
DRAIN_SECONDS = 5.0
DRAIN_POLL_SECONDS = 0.01


def _is_base_url(url: str) -> bool:
    """Return whether ``url`` is ``http://host[:port][/]``, the only form the kit's clients and probes take."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username or parts.password)
    )


def no_backend_error(pool: Pool, last_error: str | None = None) -> ApiError:
    """Return the error for a request no backend could serve.

    503 when no backend is healthy (nothing to do but wait or start one), 502 when some are
    but the request could not safely go to another after its backend failed.
    """
    if not any(backend.healthy for backend in pool.backends()):
        names = ", ".join(backend.name for backend in pool.backends()) or "none configured"
        return ApiError(
            503,
            f"no healthy backend in pool {pool.name!r} (backends: {names}); "
            "start one (scalelab start <instance>) or wait for its health check to pass",
        )
    return ApiError(502, f"the request failed in pool {pool.name!r} and was not safe to retry; last: {last_error}")


class BalancedTier:
    """Backends of one tier with health checks, runtime algorithm/weight knobs and failover."""

    def __init__(
        self,
        name: str,
        backends: Iterable[tuple[str, str]],
        settings: PoolSettings,
        knobs: Knobs,
        registry: CollectorRegistry | None,
        probe: Probe = http_probe,
        breakers: bool = False,
        retries: tuple[float, float] | None = None,
    ) -> None:
        """``breakers``: the tier's circuit breakers get knobs (breaker_failures, breaker_cooldown_seconds).

        ``retries``: the failover loop of :meth:`request` has a retry budget of this ratio and
        backs off this many ms (doubling, with jitter) before each retry; both are knobs
        (retry_budget, retry_backoff_ms). None: every safe retry is made at once.
        """
        self.settings = settings
        self.pool = Pool(name, backends, settings.algorithm, settings.health_policy(), registry)
        self.pool.set_breaker(settings.breaker_failures, settings.breaker_cooldown_seconds)
        self.checker = HealthChecker(self.pool, self.pool.policy, probe)
        self.knobs = knobs
        self._clients: dict[str, HttpClient] = {}
        # Serializes adds and removes, so two removals at once cannot both pass the "not the last one" check.
        self._membership = threading.Lock()
        knobs.add(Knob("algorithm", settings.algorithm, f"How {name} picks a backend.", choices=tuple(ALGORITHMS)))
        if breakers:
            knobs.add(
                Knob(
                    "breaker_failures",
                    float(settings.breaker_failures),
                    f"Failed answers in a row that open the circuit breaker of one of {name}; 0: off.",
                    0,
                    1000,
                )
            )
            knobs.add(
                Knob(
                    "breaker_cooldown_seconds",
                    float(settings.breaker_cooldown_seconds),
                    "Seconds an open breaker waits before one trial request.",
                    0.1,
                    600,
                )
            )
        self.retry_budget: RetryBudget | None = None
        if retries is not None:
            ratio, backoff_ms = retries
            self.retry_budget = RetryBudget(ratio, registry)
            knobs.add(Knob("retry_budget", float(ratio), f"Retries allowed per request to {name} (a share).", 0, 10))
            knobs.add(
                Knob("retry_backoff_ms", float(backoff_ms), "Backoff before the first retry (ms), doubling.", 0, 1000)
            )
        for backend in self.pool.backends():
            self._add_weight_knob(backend)
        knobs.on_change(self._apply)
        self.pool.on_transition(self._on_transition)

    def _on_transition(self, backend: Backend, healthy: bool) -> None:
        log.warning("%s %s is now %s", self.pool.name, backend.name, "UP" if healthy else "DOWN")
        client = self._clients.get(backend.name)
        if not healthy and client is not None:
            cut = client.abort_in_flight()
            if cut:
                log.warning("cut %d request(s) waiting on %s; idempotent ones go to another backend", cut, backend.name)

    def _add_weight_knob(self, backend: Backend) -> None:
        self.knobs.add(
            Knob(f"{WEIGHT_PREFIX}{backend.name}", backend.weight, f"Weight of {backend.name}.", 0, MAX_WEIGHT)
        )

    def _apply(self, name: str, value: Any) -> None:
        if name == "algorithm":
            self.pool.set_algorithm(value)
        elif name == "breaker_failures":
            self.pool.set_breaker(failures=int(value))
        elif name == "breaker_cooldown_seconds":
            self.pool.set_breaker(cooldown=value)
        elif name == "retry_budget" and self.retry_budget is not None:
            self.retry_budget.ratio = value
        elif name.startswith(WEIGHT_PREFIX):
            # The backend may have been removed between the knob change and this call.
            with contextlib.suppress(KeyError):
                self.pool.set_weight(name.removeprefix(WEIGHT_PREFIX), value)

    def start(self) -> None:
        """Start health-checking every backend."""
        self.checker.start()

    def add_backend(self, spec: Any) -> Backend:
        """Add a backend from ``{"name": ..., "url": ..., "weight": ...}``; raise a 4xx ApiError when invalid."""
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("url"), str):
            raise ApiError(400, 'send {"name": "microservice-4", "url": "http://127.0.0.1:5008", "weight": 1}')
        if not BACKEND_NAME.fullmatch(spec["name"]):
            raise ApiError(
                400,
                f"backend name must be 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-', "
                f"not {shown(spec['name'])}",
            )
        if not _is_base_url(spec["url"]):
            raise ApiError(400, f"backend url must look like http://host:port, not {shown(spec['url'])}")
        weight = spec.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
            raise ApiError(400, f"weight must be a whole number from 0 to {MAX_WEIGHT}")
        with self._membership:
            try:
                backend = self.pool.add(spec["name"], spec["url"], weight)
            except ValueError as exc:
                raise ApiError(409, str(exc)) from None
            self._add_weight_knob(backend)
        self.checker.watch(backend)
        return backend

    def remove_backend(self, name: str, drain_seconds: float = 0.0, allow_last: bool = False) -> Backend:
        """Take backend ``name`` out of rotation, drop its weight knob and close its connections.

        No new request goes to it once this returns; its health checks end after the one under
        way. Requests already sent to it get up to ``drain_seconds`` to finish (0: none; the
        asyncio balancer drains on its own loop instead), then are cut like a down backend's.
        Raise a 404 ApiError naming the known backends for an unknown name, and a 409 for the
        pool's last backend (a pool with none answers every request 503).
        """
        with self._membership:
            names = [backend.name for backend in self.pool.backends()]
            if name not in names:
                raise ApiError(
                    404, f"pool {self.pool.name!r} has no backend {name!r}; it has {', '.join(names) or 'none'}",
                    backends=names,
                )  # fmt: skip
            if len(names) == 1 and not allow_last:
                raise ApiError(
                    409,
                    f"{name!r} is the last backend of pool {self.pool.name!r}: without it every request would "
                    "fail with 503; add another backend first",
                    backends=names,
                )
            backend = self.pool.get(name)
            self.pool.remove(name)
            if f"{WEIGHT_PREFIX}{name}" in self.knobs:
                self.knobs.remove(f"{WEIGHT_PREFIX}{name}")
            # Popped now, not after draining: a backend added again under this name gets a client of its own.
            client = self._clients.pop(name, None)
        log.info("%s %s removed from the pool (%d request(s) in flight)", self.pool.name, name, backend.in_flight)
        self.drain(backend, drain_seconds)
        if client is not None:
            cut = client.abort_in_flight()  # also closes its idle connections
            if cut:
                log.warning("cut %d request(s) still waiting on removed %s after %.1f s", cut, name, drain_seconds)
        return backend

    @staticmethod
    def drain(backend: Backend, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``backend``'s requests in flight to finish; return whether they did."""
        deadline = time.monotonic() + timeout
        while backend.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(DRAIN_POLL_SECONDS)
        return backend.in_flight == 0

    def client(self, backend: Backend) -> HttpClient:
        """Return the pooled HTTP client for ``backend``."""
        client = self._clients.get(backend.name)
        if client is None:
            client = HttpClient(backend.url, timeout=self.settings.upstream_timeout)
            if not backend.removed:  # one picked just before its removal must not come back into the dict
                self._clients[backend.name] = client
        return client

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        deadline: Deadline | None = None,
        timeout: float | None = None,
    ) -> tuple[Backend, Response]:
        """Send a request to a healthy backend, failing over to the next one when that is safe.

        Each attempt waits at most ``timeout`` (default: the tier's upstream timeout); with a
        ``deadline``, at most what is left of it too, and no attempt starts once it is spent.
        Raise a 503 ApiError when no backend is healthy, a 502 when every attempt failed, and a
        504 when the deadline ran out first.
        """
        last_error = ""
        cap = self.settings.upstream_timeout if timeout is None else timeout
        budget = self.retry_budget
        spent = False

        def retry(attempt: int) -> bool:
            # Asked before each retry: the budget must hold one, and the backoff must fit in the deadline.
            nonlocal spent
            if budget is None:
                return True
            if not budget.allow():
                spent = True
                return False
            wait = backoff_seconds(attempt, self.knobs["retry_backoff_ms"] / 1000)
            if deadline is not None and wait >= deadline.remaining():
                return False
            time.sleep(wait)
            return True

        if budget is not None:
            budget.sent()
        try:
            for backend in self.pool.attempts(retry=retry):
                waiting_for = f"pool {self.pool.name!r}" + (f" (last error: {last_error})" if last_error else "")
                attempt_timeout = cap if deadline is None else deadline.timeout(cap, waiting_for)
                self.pool.begin(backend)
                try:
                    response = self.client(backend).request(method, path, body, headers, attempt_timeout)
                except UpstreamError as exc:
                    self.pool.end(backend, exc.failure.value)
                    self.pool.report_failure(backend, exc.failure, str(exc))
                    last_error = f"{backend.name}: {exc}"
                    if retryable(exc.failure, method):
                        continue
                    break
                self.pool.end(backend, response.status)
                return backend, response
        except NoHealthyBackend as exc:
            raise ApiError(
                503, f"{exc}; start one (scalelab start <instance>) or wait for its health check to pass"
            ) from None
        if spent:
            raise ApiError(
                503,
                f"no retry in pool {self.pool.name!r}: the retry budget is spent (retry_budget knob; failures "
                f"everywhere, so retrying would only add load); last: {last_error}",
                headers={"Retry-After": "1"},
            )
        if not any(backend.healthy for backend in self.pool.backends()):
            raise no_backend_error(self.pool)  # every attempt took its backend down: 503, as the balancer says
        if deadline is not None and deadline.expired():  # the last attempt ran out of time, not of backends
            raise deadline.exceeded(f"pool {self.pool.name!r} (last error: {last_error})")
        raise ApiError(502, f"every attempt in pool {self.pool.name!r} failed; last: {last_error}")
