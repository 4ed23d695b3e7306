"""Leases on missing keys: one caller at a time may fill a key, whichever gateway it runs on.

The idea of memcached's leases (Nishtala et al., "Scaling Memcache at Facebook", NSDI 2013).
A reader that misses asks for a lease. The first gets a token and goes to the database; the
others learn that the key is being filled and wait briefly for the value instead of going to the
database too, which coalesces a stampede across every gateway, not only within one. A fill
must carry the token: a lease that was invalidated (the key was deleted or the cache flushed
while the reader was away) or that expired refuses its fill, so a value read before a change
cannot overwrite it. A lease that is never used expires, so a reader that died holds nobody up
for longer than that.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["LEASE_RESULTS", "Leases"]

# What became of a request for a lease or of a fill with one, as the metrics count them.
LEASE_RESULTS = ("granted", "held", "filled", "refused")
T = TypeVar("T")


class Leases(Collector):
    """The outstanding lease of each missing key, each with its token and expiry."""

    def __init__(self, seconds: float, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        """Leases last ``seconds``; at most ``limit`` are outstanding (the oldest are dropped beyond that)."""
        self.seconds = seconds
        self._limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, tuple[str, float]] = {}  # key -> (token, expiry), oldest first
        self._counts = dict.fromkeys(LEASE_RESULTS, 0)

    def acquire(self, key: str, lookup: Callable[[], T | None]) -> tuple[T | None, str | None]:
        """Return ``(entry, None)`` when ``lookup()`` finds the key, else ``(None, token)`` for filling it,
        or ``(None, None)`` when another caller holds a live lease on it.

        The lookup runs under the leases' lock, so no fill lands between a miss and its lease:
        a reader never gets a lease for a key that was just filled.
        """
        now = self._clock()
        with self._lock:
            entry = lookup()
            if entry is not None:
                return entry, None
            held = self._leases.get(key)
            if held is not None and held[1] > now:
                self._counts["held"] += 1
                return None, None
            token = secrets.token_urlsafe(12)
            self._leases.pop(key, None)  # re-inserted last: the dict stays ordered by age
            self._leases[key] = (token, now + self.seconds)
            self._counts["granted"] += 1
            self._trim(now)
            return None, token

    def fill(self, key: str, token: str, store: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``store()`` and end the lease if ``token`` is ``key``'s live lease; return ``(True, its result)``.

        Return ``(False, None)`` and store nothing otherwise. Both happen under the leases' lock:
        no reader sees the lease gone before the value is there, and no delete lands between.
        """
        now = self._clock()
        with self._lock:
            held = self._leases.get(key)
            if held is None or held[0] != token or held[1] <= now:
                self._counts["refused"] += 1
                return False, None
            try:
                return True, store()
            finally:  # stored or refused (too large): either way the lease is used up
                del self._leases[key]
                self._counts["filled"] += 1

    def invalidate(self, key: str) -> None:
        """Drop the lease on ``key``: its fill would store a value read before the key changed."""
        with self._lock:
            self._leases.pop(key, None)

    def clear(self) -> None:
        """Drop every lease (the cache was flushed)."""
        with self._lock:
            self._leases.clear()

    def outstanding(self) -> int:
        """Return how many live leases there are."""
        now = self._clock()
        with self._lock:
            return sum(expiry > now for _token, expiry in self._leases.values())

    def _trim(self, now: float) -> None:
        # Expired leases are dropped from the oldest end; past the limit the oldest live ones go too.
        for key in list(self._leases):
            if self._leases[key][1] > now and len(self._leases) <= self._limit:
                break
            del self._leases[key]

    def collect(self) -> Iterable[Any]:
        """Export lease requests and fills by result, and the live leases."""
        counts = CounterMetricFamily(
            "scalelab_cache_leases", "Lease requests and fills with a lease, by result.", labels=["result"]
        )
        with self._lock:
            for result, count in self._counts.items():
                counts.add_metric([result], count)
        yield counts
        yield GaugeMetricFamily("scalelab_cache_leases_outstanding", "Live leases on missing keys.", self.outstanding())
