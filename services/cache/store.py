"""The cache's storage: a bounded LRU with a TTL per entry (cachetools' TLRUCache), counted for stats."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from cachetools import TLRUCache
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CacheStore", "Entry"]


class Entry(NamedTuple):
    """A stored value with its time to live and when it was stored (timer seconds)."""

    value: Any
    ttl: float
    stored_at: float


class _CountingCache(TLRUCache):
    """TLRUCache that counts what it drops, telling capacity evictions from expirations apart."""

    def __init__(self, maxsize: int, timer: Callable[[], float]) -> None:
        super().__init__(maxsize, ttu=lambda _key, entry, now: now + entry.ttl, timer=timer)
        self.evictions = 0
        self.expirations = 0

    def expire(self, time: float | None = None) -> list[tuple[Any, Any]]:
        expired = super().expire(time)
        self.expirations += len(expired)
        return expired

    def popitem(self) -> tuple[Any, Any]:
        # cachetools calls popitem only to make room, after dropping expired entries first.
        item = super().popitem()
        self.evictions += 1
        return item


class CacheStore(Collector):
    """Thread-safe bounded TTL cache with hit, miss, eviction and expiration counts."""

    def __init__(
        self,
        capacity: int,
        default_ttl: float,
        timer: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.default_ttl = default_ttl
        self._timer = timer
        self._cache = _CountingCache(capacity, timer)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.sets = 0
        self.deletes = 0
        if registry is not None:
            registry.register(self)

    def __len__(self) -> int:
        return len(self._cache)

    @property
    def capacity(self) -> int:
        return int(self._cache.maxsize)

    def get(self, key: str) -> Entry | None:
        """Return the live entry for ``key``, or None (an expired entry is never returned)."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def set(self, key: str, value: Any, ttl: float | None = None) -> Entry:
        """Store ``value`` under ``key`` for ``ttl`` seconds (the default TTL when None)."""
        ttl = self.default_ttl if ttl is None else ttl
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        with self._lock:
            entry = Entry(value, ttl, self._timer())
            self._cache[key] = entry
            self.sets += 1
            return entry

    def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        with self._lock:
            self.deletes += 1
            return self._cache.pop(key, None) is not None

    def flush(self) -> int:
        """Remove every entry; return how many there were."""
        with self._lock:
            count = len(self._cache)
            self._cache.clear()
            return count

    def remaining(self, entry: Entry) -> float:
        """Return the seconds ``entry`` has left to live."""
        return max(0.0, entry.stored_at + entry.ttl - self._timer())

    def stats(self) -> dict[str, Any]:
        """Return hits, misses, evictions, expirations, size and capacity."""
        with self._lock:
            self._cache.expire()
            lookups = self.hits + self.misses
            return {
                "hits": self.hits,
                "misses": self.misses,
                "hit_ratio": round(self.hits / lookups, 4) if lookups else None,
                "sets": self.sets,
                "deletes": self.deletes,
                "evictions": self._cache.evictions,
                "expirations": self._cache.expirations,
                "size": len(self._cache),
                "capacity": self.capacity,
                "default_ttl_seconds": self.default_ttl,
            }

    def collect(self) -> Iterable[Any]:
        """Export the counts as ``scalelab_cache_*`` metrics."""
        stats = self.stats()
        for name, doc in (
            ("hits", "Cache lookups that found a live entry."),
            ("misses", "Cache lookups that found nothing (or only an expired entry)."),
            ("evictions", "Entries dropped to make room (LRU)."),
            ("expirations", "Entries dropped because their TTL ran out."),
            ("sets", "Entries stored."),
        ):
            yield CounterMetricFamily(f"scalelab_cache_{name}", doc, value=stats[name])
        yield GaugeMetricFamily("scalelab_cache_entries", "Live entries in the cache.", value=stats["size"])
        yield GaugeMetricFamily(
            "scalelab_cache_capacity_entries", "Most entries the cache holds.", value=stats["capacity"]
        )
