"""Cache-aside reads for /data: cache first, then the database (coalesced), then fill the cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter

from ..kit import ApiError, HttpClient, Knobs, SingleFlight, UpstreamError

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

    def read(self, key: str) -> tuple[Any, bool]:
        """Return ``(record, cached)`` for ``key``."""
        use_cache = self._knobs["cache_enabled"]
        if use_cache:
            hit = self._cache_get(key)
            if hit is not None:
                return hit, True
        else:
            self.lookups.labels("bypass").inc()
        if self._knobs["coalescing"]:
            (record, cached), shared = self._flight.do(key, lambda: self._load_once(key, use_cache))
            if shared:
                self.coalesced.inc()
            return record, cached
        return self._load(key, use_cache), False

    def _load_once(self, key: str, use_cache: bool) -> tuple[Any, bool]:
        """Load ``key`` as the one caller doing so; first look again whether it is cached now.

        A request that missed the cache just before another one filled it, and asked for
        the key just after that one's load finished, would otherwise read the database again.
        """
        if use_cache:
            hit = self._cache_get(key, count=False)
            if hit is not None:
                return hit, True
        return self._load(key, use_cache), False

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

    def _cache_get(self, key: str, count: bool = True) -> Any | None:
        """Return the cached record or None; ``count`` says whether this lookup shows in the metrics."""
        if not self._cache_available():
            if count:
                self.lookups.labels("error").inc()
            return None
        try:
            status, body = self._cache.get_json(_path("/cache/", cache_key(key)))
        except UpstreamError as exc:
            self._cache_failed(exc)
            return None
        result = "hit" if status == 200 else "miss"
        if count:
            self.lookups.labels(result).inc()
        return body["value"] if status == 200 else None

    def _load(self, key: str, fill_cache: bool) -> Any:
        self.database_reads.inc()
        try:
            status, body = self._database.get_json(_path("/db/", key))
        except UpstreamError as exc:
            raise ApiError(503, f"database unavailable ({exc}); check the database instance") from None
        if status != 200:
            message = body.get("error") if isinstance(body, dict) else None
            raise ApiError(503 if status >= 500 else 502, f"database answered {status}: {message or 'no detail'}")
        body.pop("created", None)
        if fill_cache and self._cache_available():
            try:
                entry = {"value": body, "ttl": self._knobs["cache_ttl_seconds"]}
                # Storing a value under a key is safe to repeat on a fresh connection.
                self._cache.send_json("POST", _path("/cache/", cache_key(key)), entry, idempotent=True)
            except UpstreamError as exc:
                self._cache_failed(exc)
        return body
