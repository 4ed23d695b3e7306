"""Cache-aside reads for /data: cache first, then the database (coalesced), then fill the cache.

Every call waits at most its client's timeout or what is left of the request's deadline, and
carries the deadline on. Coalesced reads share the first reader's call: a reader waiting for it
gives up with a 504 when its own budget runs out first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..kit import ApiError, ConfigError, HttpClient, Knobs, SingleFlight, UpstreamError
from ..kit.breaker import BREAKER_STATES, CLOSED, OPEN, Breaker, BreakerPolicy
from ..kit.deadline import Deadline

__all__ = ["ACROSS_GATEWAYS", "COALESCING", "OFF", "PER_GATEWAY", "CacheAside", "cache_key", "coalescing_mode"]

log = logging.getLogger(__name__)

# How an event loop asks the cache: (target, headers, timeout) -> (status, body).
AskCache = Callable[[str, Mapping[str, str], float], Awaitable[tuple[int, bytes]]]
# How an event loop runs blocking work on a thread: (function, *args) -> its result.
RunBlocking = Callable[..., Awaitable[Any]]

# The coalescing knob: off; per_gateway, one database read per key in each gateway (single-flight);
# across_gateways, one in all of them (single-flight here, and the cache's lease on the key).
OFF, PER_GATEWAY, ACROSS_GATEWAYS = COALESCING = ("off", "per_gateway", "across_gateways")
# How often a gateway whose read waits on another gateway's lease reads the cache again.
LEASE_POLL_SECONDS = 0.01


class CachePolicy:
    """When the cache's breaker opens: with breakers on, as every breaker does (``shared``); off, at the first
    failure for ``retry_seconds`` (GATEWAY_CACHE_RETRY_SECONDS).

    A cache that fails costs only a trip to the database, so it is skipped at once whatever the
    knobs; after the cool-down one lookup tries it (half-open) while the others still go around.
    """

    def __init__(self, shared: BreakerPolicy, retry_seconds: float) -> None:
        self._shared = shared
        self._retry_seconds = retry_seconds

    @property
    def failures(self) -> int:
        """Return the failures in a row that open the breaker."""
        return self._shared.failures or 1

    @property
    def cooldown(self) -> float:
        """Return the seconds an open breaker waits before its trial."""
        return self._shared.cooldown if self._shared.failures else self._retry_seconds


def coalescing_mode(setting: str) -> str:
    """Return the coalescing mode GATEWAY_COALESCING names (true and false, from when it was a switch, too)."""
    text = setting.strip().lower()
    mode = {"true": PER_GATEWAY, "1": PER_GATEWAY, "on": PER_GATEWAY, "false": OFF, "0": OFF}.get(text, text)
    if mode not in COALESCING:
        raise ConfigError(f"GATEWAY_COALESCING is one of {', '.join(COALESCING)}, not {setting!r}")
    return mode


def cache_key(key: str) -> str:
    """Return the cache-service key for a /data key: namespaced, so no key can name a cache route."""
    return "data:" + key


def _path(prefix: str, key: str) -> str:
    # safe="" encodes "/" too: the key stays one path segment on the wire.
    return prefix + quote(key, safe="")


class CacheAside:
    """Read records through the cache; the cache being down only costs a trip to the database."""

    def __init__(
        self,
        cache: HttpClient,
        database: HttpClient,
        knobs: Knobs,
        registry: CollectorRegistry,
        retry_after: float,
        clock: Callable[[], float] = time.monotonic,
        breaker_policy: BreakerPolicy | None = None,
    ) -> None:
        """``breaker_policy``: when the database's circuit breaker opens (shared with the microservices' pool)."""
        self._cache = cache
        self._database = database
        self._knobs = knobs
        self._flight = SingleFlight()
        self._retry_after = retry_after
        self._clock = clock
        self.lookups = Counter(
            "scalelab_gateway_cache_lookups", "Cache-aside lookups, by result (hit, miss, error, bypass).",
            ["result"], registry=registry,
        )  # fmt: skip
        # Every /data request counts a lookup: bind the children once (a label lookup costs more than the count).
        self._counted = {result: self.lookups.labels(result) for result in ("hit", "miss", "error", "bypass")}
        self.coalesced = Counter(
            "scalelab_gateway_coalesced_requests",
            "Reads that waited for another read of the same key.",
            registry=registry,
        )
        self.database_reads = Counter(
            "scalelab_gateway_database_reads", "Reads sent to the database.", registry=registry
        )
        # The database's circuit breaker: after a run of failed reads, refuse at once for a cool-down.
        shared = breaker_policy or BreakerPolicy()
        self._database_breaker = Breaker(shared)
        # The cache's: skipped after a failure, the database answers meanwhile (see CachePolicy).
        self._cache_breaker = Breaker(CachePolicy(shared, retry_after))
        self._breaker_lock = threading.Lock()
        self.breaker_state = Gauge(
            "scalelab_gateway_breaker_state",
            "1 for the state of the gateway's circuit breaker on a dependency.",
            ["target", "state"],
            registry=registry,
        )
        self._shown: tuple[str, str] | None = None
        self._show_breaker()
        self.lease_waits = Counter(
            "scalelab_gateway_lease_waits",
            "Reads that waited for another gateway to fill the key (coalescing across gateways).",
            registry=registry,
        )

    @property
    def cache_client(self) -> HttpClient:
        """The client of the cache service (its address and timeouts)."""
        return self._cache

    def read(self, key: str, deadline: Deadline) -> tuple[Any, bool]:
        """Return ``(record, cached)`` for ``key``; raise a 504 ApiError when ``deadline`` passes first."""
        use_cache = self._knobs["cache_enabled"]
        if use_cache:
            hit = self._cache_get(key, deadline)
            if hit is not None:
                return hit, True
        return self.read_missed(key, deadline, use_cache)

    async def read_async(self, key: str, deadline: Deadline, ask: AskCache, run: RunBlocking) -> tuple[Any, bool]:
        """``read`` on an event loop: the cache lookup through ``ask``, a miss's work through ``run``.

        ``ask(target, headers, timeout)`` sends ``GET target`` to the cache and returns its status
        and body, or raises a ConnectionError; ``run(function, *args)`` runs the blocking rest of a
        miss (coalescing, the database, filling the cache) on a thread and returns its result.
        """
        use_cache = self._knobs["cache_enabled"]
        if use_cache and self._may_ask(deadline, count=True):
            try:
                timeout = deadline.timeout(self._cache.timeout, "the cache")
                status, raw = await ask(_path("/cache/", cache_key(key)), deadline.headers(), timeout)
                body = json.loads(raw) if status in (200, 404) else None
            except ConnectionError as exc:
                hit = self._not_asked(exc, deadline)[0]
            except ValueError as exc:
                self._cache_failed(exc)
                hit = None
            else:
                hit = self._answered(status, body, count=True)[0]
            if hit is not None:
                return hit, True
        return await run(self.read_missed, key, deadline, use_cache)

    def read_missed(self, key: str, deadline: Deadline, use_cache: bool) -> tuple[Any, bool]:
        """The rest of ``read`` once the cache missed (or was not asked: ``use_cache`` False, the cache off)."""
        if not use_cache:
            self._counted["bypass"].inc()
        mode = self._knobs["coalescing"]
        if mode != OFF:
            leased = use_cache and mode == ACROSS_GATEWAYS
            try:
                (record, cached), shared = self._flight.do(
                    key, lambda: self._load_once(key, use_cache, deadline, leased), wait=deadline.remaining()
                )
            except TimeoutError:
                raise deadline.exceeded("the database (a read of the same key by another request)") from None
            if shared:
                self.coalesced.inc()
            return record, cached
        return self._load(key, use_cache, deadline), False

    def _load_once(self, key: str, use_cache: bool, deadline: Deadline, leased: bool = False) -> tuple[Any, bool]:
        """Load ``key`` as the one caller doing so; first look again whether it is cached now.

        A request that missed the cache just before another one filled it, and asked for
        the key just after that one's load finished, would otherwise read the database again.
        ``leased``: the read goes to the database only with the cache's lease on the key.
        """
        if leased:
            return self._load_leased(key, deadline)
        if use_cache:
            hit = self._cache_get(key, deadline, count=False)
            if hit is not None:
                return hit, True
        return self._load(key, use_cache, deadline), False

    def _load_leased(self, key: str, deadline: Deadline) -> tuple[Any, bool]:
        """Read ``key`` once across every gateway: with the cache's lease, or from the cache once it is filled.

        Without the lease (another gateway holds it), read the cache again every
        LEASE_POLL_SECONDS until the value is there; a lease whose holder died expires in the
        cache and the next read here gets it. A cache that fails is skipped: the database answers.
        """
        waited = False
        while True:
            hit, lease, filling = self._cache_lookup(key, deadline, lease=True, count=not waited)
            if hit is not None:
                return hit, True
            if not filling:  # the lease is ours, or the cache could not be asked
                return self._load(key, lease is not None or self._cache_available(), deadline, lease), False
            if not waited:
                waited = True
                self.lease_waits.inc()
            if deadline.remaining() <= LEASE_POLL_SECONDS:
                raise deadline.exceeded("the cache (another gateway is reading the key from the database)")
            time.sleep(LEASE_POLL_SECONDS)

    def cache_state(self) -> str:
        """Return ``available`` or ``skipped`` (its breaker is open: the cache failed and is bypassed for a while)."""
        return "skipped" if self.cache_breaker() == OPEN else "available"

    def cache_breaker(self) -> str:
        """Return the state of the cache's circuit breaker (closed, half_open or open)."""
        return self._state(self._cache_breaker)

    def _cache_available(self) -> bool:
        return self.cache_breaker() != OPEN

    def _cache_answered(self) -> None:
        if self._record(self._cache_breaker, True):
            log.warning("the cache's circuit breaker is now %s", self._cache_breaker.state)

    def _cache_failed(self, error: Exception) -> None:
        if self._record(self._cache_breaker, False):
            log.warning(
                "cache unavailable (%s): its circuit breaker is %s; reads go to the database for %.1f s",
                error,
                self._cache_breaker.state,
                self._cache_breaker.policy.cooldown,
            )
        self._counted["error"].inc()

    def _cache_get(self, key: str, deadline: Deadline, count: bool = True) -> Any | None:
        """Return the cached record or None; ``count`` says whether this lookup shows in the metrics."""
        return self._cache_lookup(key, deadline, count=count)[0]

    def _cache_lookup(
        self, key: str, deadline: Deadline, lease: bool = False, count: bool = True
    ) -> tuple[Any | None, str | None, bool]:
        """Return ``(record or None, lease token, whether another caller is filling the key)``.

        ``lease`` asks the cache for the lease on a miss; ``count`` says whether this lookup shows in the metrics.
        """
        if not self._may_ask(deadline, count):
            return None, None, False
        try:
            response = self._cache.request(
                "GET",
                _path("/cache/", cache_key(key)) + ("?lease=true" if lease else ""),
                headers=deadline.headers(),
                timeout=deadline.timeout(self._cache.timeout, "the cache"),
            )
            body = response.json() if response.status in (200, 404) else None
        except UpstreamError as exc:
            return self._not_asked(exc, deadline)
        except ValueError as exc:
            self._cache_failed(exc)
            return None, None, False
        return self._answered(response.status, body, count)

    def _may_ask(self, deadline: Deadline, count: bool) -> bool:
        """Return whether the cache may be asked now: time is left, and its breaker lets the call through."""
        if deadline.expired():
            return False  # no time to ask: the database read that follows answers 504
        if not self._allowed(self._cache_breaker):
            if count:
                self._counted["error"].inc()
            return False
        return True

    def _not_asked(self, error: Exception, deadline: Deadline) -> tuple[None, None, bool]:
        """Count a lookup the cache did not answer, unless the request's budget cut it short."""
        if not deadline.expired():  # cut short by the budget, not the cache's fault
            self._cache_failed(error)
        return None, None, False

    def _answered(self, status: int, body: Any, count: bool) -> tuple[Any | None, str | None, bool]:
        """Read the cache's answer (``body`` parsed): ``(record or None, lease token, whether another is filling)``."""
        self._cache_answered()
        hit = status == 200 and isinstance(body, dict) and "value" in body
        if count:
            self._counted["hit" if hit else "miss"].inc()
        if hit:
            return body["value"], None, False
        token = body.get("lease") if isinstance(body, dict) else None
        filling = bool(isinstance(body, dict) and body.get("filling"))
        return None, token if isinstance(token, str) else None, filling

    def database_breaker(self) -> str:
        """Return the state of the database's circuit breaker (closed, half_open or open)."""
        return self._state(self._database_breaker)

    def _database_answered(self, ok: bool) -> None:
        if self._record(self._database_breaker, ok):
            log.warning("the database's circuit breaker is now %s", self._database_breaker.state)

    # The breakers on the cache and the database, one lock for both (the pool keeps its own for the microservices).
    def _state(self, breaker: Breaker) -> str:
        with self._breaker_lock:
            breaker.allows(self._clock())  # an open one past its cool-down reads half-open
            return breaker.state

    def _allowed(self, breaker: Breaker) -> bool:
        """Return whether a call may go now (half-open: it is the one trial)."""
        with self._breaker_lock:
            if not breaker.policy.failures and breaker.state != CLOSED:
                breaker.reset()  # breakers were switched off
            allowed = breaker.allows(self._clock())
            if allowed:
                breaker.picked()
            self._show_breaker()
            return allowed

    def _record(self, breaker: Breaker, ok: bool) -> bool:
        """Count a call's outcome; return whether the breaker changed state."""
        with self._breaker_lock:
            changed = breaker.record(ok, self._clock())
            if changed:
                self._show_breaker()
            return changed

    def _show_breaker(self) -> None:
        states = (self._database_breaker.state, self._cache_breaker.state)
        if states == self._shown:
            return  # checked on every call: set the gauges only when a state changed
        self._shown = states
        for target, breaker in (("database", self._database_breaker), ("cache", self._cache_breaker)):
            for state in BREAKER_STATES:
                self.breaker_state.labels(target, state).set(1.0 if breaker.state == state else 0.0)

    def _load(self, key: str, fill_cache: bool, deadline: Deadline, lease: str | None = None) -> Any:
        if not self._allowed(self._database_breaker):
            policy = self._database_breaker.policy
            raise ApiError(
                503,
                f"the database's circuit breaker is open after {policy.failures} failed reads in a row: reads are "
                f"refused for {policy.cooldown:g} s, then one tries it again; check the database instance",
            )
        self.database_reads.inc()
        try:
            response = self._database.request(
                "GET",
                _path("/db/", key),
                headers=deadline.headers(),
                timeout=deadline.timeout(self._database.timeout, "the database"),
            )
            body = response.json() if response.body else None
        except UpstreamError as exc:
            if deadline.expired():
                self._database_answered(True)  # our budget ran out: no verdict on the database
                raise deadline.exceeded("the database") from None
            self._database_answered(False)
            raise ApiError(503, f"database unavailable ({exc}); check the database instance") from None
        except ValueError:
            self._database_answered(False)
            raise ApiError(502, f"database answered {response.status} with a body that is not JSON") from None
        # A 504 is the deadline we gave it running out (our budget), not the database failing.
        self._database_answered(response.status < 500 or response.status == 504)
        if response.status != 200 or not isinstance(body, dict):
            message = body.get("error") if isinstance(body, dict) else None
            status = response.status
            if status == 504:  # the deadline it was given (ours, less a hop margin) came first
                raise deadline.exceeded("the database")
            raise ApiError(503 if status >= 500 else 502, f"database answered {status}: {message or 'no detail'}")
        body.pop("created", None)
        if fill_cache and self._cache_available() and not deadline.expired():
            try:
                fill = {"value": body, "ttl": self._knobs["cache_ttl_seconds"]}
                if lease is not None:  # stored only while the lease is live: no stale value after a delete
                    fill["lease"] = lease
                entry = json.dumps(fill).encode()
                # Storing a value under a key is safe to repeat on a fresh connection.
                self._cache.request(
                    "POST",
                    _path("/cache/", cache_key(key)),
                    entry,
                    {"Content-Type": "application/json", **deadline.headers()},
                    timeout=deadline.timeout(self._cache.timeout, "the cache"),
                    idempotent=True,
                )
            except UpstreamError as exc:
                if not deadline.expired():
                    self._cache_failed(exc)
            except ApiError:
                pass  # the budget ran out just now: the record is read, only the cache fill is skipped
        return body
