"""Threads kept for health checks and admin: request routes never take them.

A thread-pool server runs, per instance:

* ``SCALELAB_THREADS`` threads that run requests (the service's concurrency, as before);
* ``SCALELAB_QUEUED_REQUESTS`` more in which requests wait for one of those to come free
  (up to :data:`QUEUE_WAIT_SECONDS`), so a burst is queued rather than refused;
* ``SCALELAB_RESERVED_THREADS`` more that request routes never keep: ``/health``, ``/metrics``,
  ``/control``, ``/openapi.json`` and the pools' admin routes take no slot and are answered while
  every request thread waits on a hung dependency, so a tier does not fail its own health checks.

A request route that finds every slot taken and the queue full is refused at once with a 503
and ``Retry-After``: it never sits on a reserved thread. Why threads that wait rather than a
queue in front of them: the server hands requests to its threads in arrival order, and cannot
be told which of them are health checks.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter

from .errors import ApiError

__all__ = ["BUSY_RETRY_AFTER_SECONDS", "QUEUE_WAIT_SECONDS", "Admission"]

# How long a queued request waits for a thread before it is refused: below the balancer's
# 10 s wait, so the client hears "busy" from this instance rather than a timeout.
QUEUE_WAIT_SECONDS = 5.0
BUSY_RETRY_AFTER_SECONDS = 1


class Admission:
    """``limit`` request slots and a queue of ``queue`` waiting requests; refuse the rest with a 503."""

    def __init__(
        self, instance: str, limit: int, queue: int, reserved: int, registry: CollectorRegistry | None
    ) -> None:
        if limit < 1 or queue < 0 or reserved < 0:
            raise ValueError(
                f"need at least 1 request thread, and 0 or more queued and reserved: not {limit}, {queue}, {reserved}"
            )
        self.instance = instance
        self.limit = limit
        self.queue = queue
        self.reserved = reserved
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self._waiting = 0
        self.refused = Counter(
            "scalelab_requests_refused_busy",
            "Requests refused with 503 because every request thread was busy and the queue full "
            "(the reserved threads serve health and admin only).",
            registry=registry,
        )

    def enter(self) -> None:
        """Take a slot, waiting in the queue if there is room; else raise a 503 ApiError naming the instance."""
        if self._slots.acquire(blocking=False):
            return
        with self._lock:
            full = self._waiting >= self.queue
            if not full:
                self._waiting += 1
        if full:
            self._refuse(f"all {self.limit} request threads are busy and {self.queue} requests already wait")
        try:
            admitted = self._slots.acquire(timeout=QUEUE_WAIT_SECONDS)
        finally:
            with self._lock:
                self._waiting -= 1
        if not admitted:
            self._refuse(f"no request thread came free within {QUEUE_WAIT_SECONDS:g} s")

    def _refuse(self, why: str) -> None:
        self.refused.inc()
        raise ApiError(
            503,
            f"{self.instance} is busy: {why} (SCALELAB_THREADS, SCALELAB_QUEUED_REQUESTS; {self.reserved} more "
            f"threads serve only health checks and admin); retry after {BUSY_RETRY_AFTER_SECONDS} s, "
            "or look for a slow dependency",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )

    def leave(self) -> None:
        """Give the slot back."""
        self._slots.release()
