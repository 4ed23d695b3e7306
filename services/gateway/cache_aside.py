"""Cache-aside reads for /data: cache first, then the database (coalesced), then fill the cache.

Every call waits at most its client's timeout or what is left of the request's deadline, and
carries the deadline on. Coalesced reads share the first reader's call: a reader waiting for it
gives up with a 504 when its own budget runs out first.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from ..kit import ApiError, HttpClient, Knobs, SingleFlight, UpstreamError
from ..kit.deadline import Deadline

__all__ = ["CacheAside", "cache_key"]

log = logging.getLogger(__name__)


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
    ) -> None:
        self._cache = cache
        self._database = database
        self._knobs = knobs
        self._flight = SingleFlight()
        self._retry_after = retry_after
        self._clock = clock
        self._cache_down_until = 0.0
        self.lookups = Counter(
            "scalelab_gateway_cache_lookups", "Cache-aside lookups, by result (hit, miss, error, bypass).",
            ["result"], registry=registry,
        )  # fmt: skip
        self.coalesced = Counter(
            "scalelab_gateway_coalesced_requests",
            "Reads that waited for another read of the same key.",
            registry=registry,
        )
        self.database_reads = Counter(
            "scalelab_gateway_database_reads", "Reads sent to the database.", registry=registry
        )

    def read(self, key: str, deadline: Deadline) -> tuple[Any, bool]:
        """Return ``(record, cached)`` for ``key``; raise a 504 ApiError when ``deadline`` passes first."""
        use_cache = self._knobs["cache_enabled"]
        if use_cache:
            hit = self._cache_get(key, deadline)
            if hit is not None:
                return hit, True
        else:
            self.lookups.labels("bypass").inc()
        if self._knobs["coalescing"]:
            try:
                (record, cached), shared = self._flight.do(
                    key, lambda: self._load_once(key, use_cache, deadline), wait=deadline.remaining()
                )
            except TimeoutError:
                raise deadline.exceeded("the database (a read of the same key by another request)") from None
            if shared:
                self.coalesced.inc()
            return record, cached
        return self._load(key, use_cache, deadline), False

    def _load_once(self, key: str, use_cache: bool, deadline: Deadline) -> tuple[Any, bool]:
        """Load ``key`` as the one caller doing so; first look again whether it is cached now.

        A request that missed the cache just before another one filled it, and asked for
        the key just after that one's load finished, would otherwise read the database again.
        """
        if use_cache:
            hit = self._cache_get(key, deadline, count=False)
            if hit is not None:
                return hit, True
        return self._load(key, use_cache, deadline), False

    def cache_state(self) -> str:
        """Return ``available`` or ``skipped`` (the cache failed recently and is bypassed for a while)."""
        return "available" if self._cache_available() else "skipped"

    def _cache_available(self) -> bool:
        return self._clock() >= self._cache_down_until

    def _cache_failed(self, error: Exception) -> None:
        if self._cache_available():
            log.warning("cache unavailable (%s); serving from the database for %.1f s", error, self._retry_after)
        self._cache_down_until = self._clock() + self._retry_after
        self.lookups.labels("error").inc()

    def _cache_get(self, key: str, deadline: Deadline, count: bool = True) -> Any | None:
        """Return the cached record or None; ``count`` says whether this lookup shows in the metrics."""
        if not self._cache_available():
            if count:
                self.lookups.labels("error").inc()
            return None
        if deadline.expired():
            return None  # no time to ask: the database read that follows answers 504
        try:
            response = self._cache.request(
                "GET",
                _path("/cache/", cache_key(key)),
                headers=deadline.headers(),
                timeout=deadline.timeout(self._cache.timeout, "the cache"),
            )
            body = response.json() if response.status == 200 else None
        except UpstreamError as exc:
            if deadline.expired():  # cut short by the budget, not the cache's fault
                return None
            self._cache_failed(exc)
            return None
        except ValueError as exc:
            self._cache_failed(exc)
            return None
        hit = isinstance(body, dict) and "value" in body
        if count:
            self.lookups.labels("hit" if hit else "miss").inc()
        return body["value"] if hit else None

    def _load(self, key: str, fill_cache: bool, deadline: Deadline) -> Any:
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
                raise deadline.exceeded("the database") from None
            raise ApiError(503, f"database unavailable ({exc}); check the database instance") from None
        except ValueError:
            raise ApiError(502, f"database answered {response.status} with a body that is not JSON") from None
        if response.status != 200 or not isinstance(body, dict):
            message = body.get("error") if isinstance(body, dict) else None
            status = response.status
            if status == 504:  # the deadline it was given (ours, less a hop margin) came first
                raise deadline.exceeded("the database")
            raise ApiError(503 if status >= 500 else 502, f"database answered {status}: {message or 'no detail'}")
        body.pop("created", None)
        if fill_cache and self._cache_available() and not deadline.expired():
            try:
                entry = json.dumps({"value": body, "ttl": self._knobs["cache_ttl_seconds"]}).encode()
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
