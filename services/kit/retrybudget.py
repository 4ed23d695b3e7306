"""A retry budget, and backoff with jitter between attempts: retries that cannot multiply the load.

A retry helps when one backend failed and another can answer. In an outage of the whole tier
every request fails, every request is retried, and the tier gets two or three times the load
just when it can serve none. The budget caps retries at ``ratio`` of the requests (each request
earns ``ratio`` of a retry; a retry spends one) plus a small floor a second, so a quiet tier can
still fail over. Between attempts the caller waits a random time up to ``base * 2**(n-1)``
(exponential backoff, "full jitter"), so the retries of many clients do not arrive together.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

__all__ = ["MAX_BACKOFF_SECONDS", "RETRY_FLOOR_PER_SECOND", "RetryBudget", "backoff_seconds"]

# Retries a second the budget allows even with no requests to earn them: a failover in a quiet lab still works.
RETRY_FLOOR_PER_SECOND = 5.0
# The most retries the budget saves up: a burst of failures after a quiet minute may not retry without end.
MAX_SAVED_RETRIES = 20.0
MAX_BACKOFF_SECONDS = 1.0


def backoff_seconds(attempt: int, base: float, rng: random.Random | None = None) -> float:
    """Return the wait before retry number ``attempt`` (1, 2, ...): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    if attempt < 1 or base <= 0:
        return 0.0
    ceiling = min(MAX_BACKOFF_SECONDS, base * 2 ** (attempt - 1))
    return (rng or random).uniform(0, ceiling)


class RetryBudget:
    """Retries allowed: ``ratio`` per request sent, plus :data:`RETRY_FLOOR_PER_SECOND`, saved up to a cap."""

    def __init__(
        self, ratio: float, registry: CollectorRegistry | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ratio = ratio
        self._clock = clock
        self._lock = threading.Lock()
        self._balance = MAX_SAVED_RETRIES
        self._counted = clock()
        self.refused = Counter(
            "scalelab_retries_refused",
            "Retries not made because the retry budget was spent (the request failed with its first error).",
            registry=registry,
        )

    def _refill(self, now: float) -> None:
        self._balance = min(MAX_SAVED_RETRIES, self._balance + (now - self._counted) * RETRY_FLOOR_PER_SECOND)
        self._counted = now

    def sent(self) -> None:
        """Count a request's first attempt: it earns ``ratio`` of a retry."""
        with self._lock:
            self._refill(self._clock())
            self._balance = min(MAX_SAVED_RETRIES, self._balance + self.ratio)

    def allow(self) -> bool:
        """Spend a retry when the budget has one; return whether it had."""
        with self._lock:
            self._refill(self._clock())
            if self._balance >= 1:
                self._balance -= 1
                return True
        self.refused.inc()
        return False

    def balance(self) -> float:
        """Return the retries the budget holds now."""
        with self._lock:
            self._refill(self._clock())
            return self._balance
