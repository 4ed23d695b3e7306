"""The cache's storage: a bounded LRU with a TTL per entry (cachetools' TLRUCache), counted for stats.

Two bounds hold at once: the number of entries, and the bytes they take. An entry's size is its
key's UTF-8 bytes plus its value as compact JSON, which is also how the value is kept: a parsed
value takes several times its JSON size in Python objects, so bounding JSON bytes while holding
objects would not bound memory. cachetools keeps the byte count (``getsizeof``); the store adds
the entry count, evicting the least recently used entries for either bound.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from cachetools import TLRUCache
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CacheStore", "Entry", "EntryTooLarge", "entry_size"]


class Entry(NamedTuple):
    """A stored value (as compact JSON) with its time to live, when it was stored (timer seconds) and its size."""

    encoded: bytes
    ttl: float
    stored_at: float
    size: int

    @property
    def value(self) -> Any:
        """Return the stored value, decoded."""
        return json.loads(self.encoded)


class EntryTooLarge(ValueError):
    """A value (with its key) takes more bytes than one entry may."""

    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"the entry for key {key[:40]!r} takes {size} bytes; one entry may take at most {limit}")
        self.size = size
        self.limit = limit


def _encode(value: Any) -> bytes:
    # Compact separators: the bytes counted are the bytes kept. allow_nan=False: NaN is not JSON.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _key_bytes(key: str) -> int:
    # surrogatepass: a key decoded from a malformed URL may hold a lone surrogate; it still has a size.
    return len(key.encode("utf-8", "surrogatepass"))


def entry_size(key: str, value: Any) -> int:
    """Return the bytes an entry for ``key`` and ``value`` counts against the cache's bounds."""
    return _key_bytes(key) + len(_encode(value))


class _CountingCache(TLRUCache):
    """TLRUCache bounded by bytes that counts what it drops, telling capacity evictions from expirations apart."""

    def __init__(self, max_bytes: int, timer: Callable[[], float]) -> None:
        super().__init__(
            max_bytes,
            ttu=lambda _key, entry, now: now + entry.ttl,
            timer=timer,
            getsizeof=lambda entry: entry.size,
        )
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


DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ENTRY_BYTES = 256 * 1024


class CacheStore(Collector):
    """Thread-safe TTL cache bounded by entries and by bytes, with hit, miss, eviction and expiration counts."""

    def __init__(
        self,
        capacity: int,
        default_ttl: float,
        timer: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
    ) -> None:
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        if not 1 <= max_entry_bytes <= max_bytes:
            raise ValueError(
                f"the largest entry ({max_entry_bytes} bytes) must be at least 1 byte and fit in the cache "
                f"({max_bytes} bytes)"
            )
        self.default_ttl = default_ttl
        self.max_entry_bytes = max_entry_bytes
        self._capacity = capacity
        self._timer = timer
        self._cache = _CountingCache(max_bytes, timer)
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
        return self._capacity

    @property
    def max_bytes(self) -> int:
        return int(self._cache.maxsize)

    def bytes_used(self) -> int:
        """Return the bytes the live entries take (keys and JSON values)."""
        with self._lock:
            self._cache.expire()
            return int(self._cache.currsize)

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
        """Store ``value`` under ``key`` for ``ttl`` seconds (the default TTL when None).

        Least recently used entries make room when the cache is full by count or by bytes; raise
        :class:`EntryTooLarge` (and store nothing) when the entry alone is over the per-entry limit.
        """
        ttl = self.default_ttl if ttl is None else ttl
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        encoded = _encode(value)
        size = _key_bytes(key) + len(encoded)
        if size > self.max_entry_bytes:
            raise EntryTooLarge(key, size, self.max_entry_bytes)
        with self._lock:
            entry = Entry(encoded, ttl, self._timer(), size)
            self._cache[key] = entry  # evicts by bytes
            while len(self._cache) > self._capacity:  # by count: the new entry is the most recently used
                self._cache.popitem()
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
        yield GaugeMetricFamily(
            "scalelab_cache_bytes", "Bytes the live entries take (keys and JSON values).", value=self.bytes_used()
        )
        yield GaugeMetricFamily("scalelab_cache_capacity_bytes", "Most bytes the cache holds.", value=self.max_bytes)
