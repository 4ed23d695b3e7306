"""Threads kept for health checks and admin: request routes may use only the service's own share.

A thread-pool server runs ``SCALELAB_THREADS`` request threads plus
``SCALELAB_RESERVED_THREADS`` more. A request route (``/data``, ``/cache/...``) takes one of the
``SCALELAB_THREADS`` slots; when they are all taken (e.g. every one waits on a hung dependency)
it waits a moment for one and is otherwise refused at once with a 503 and ``Retry-After``, so it
never sits on a reserved thread. ``/health``, ``/metrics``, ``/control``, ``/openapi.json`` and
the pool's admin routes take no slot: they are answered while the request threads are exhausted,
and a tier waiting on a slow dependency does not fail its own health checks.

Why refuse rather than queue: the server hands requests to its threads in arrival order, so a
request waiting for a slot would hold a thread a health check needs next.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter

from .errors import ApiError

__all__ = ["ADMISSION_WAIT_SECONDS", "BUSY_RETRY_AFTER_SECONDS", "Admission"]

# Long enough for a quick service's slot to come free under a burst (a cache request takes well
# under a millisecond), short enough that a queue of refusals ahead of a health check clears
# within its timeout.
ADMISSION_WAIT_SECONDS = 0.005
BUSY_RETRY_AFTER_SECONDS = 1


class Admission:
    """``limit`` slots for request routes, counted and refused with a 503 when none comes free in time."""

    def __init__(self, instance: str, limit: int, reserved: int, registry: CollectorRegistry | None) -> None:
        if limit < 1 or reserved < 0:
            raise ValueError(f"need at least 1 request thread and 0 or more reserved, not {limit} and {reserved}")
        self.instance = instance
        self.limit = limit
        self.reserved = reserved
        self._slots = threading.BoundedSemaphore(limit)
        self.refused = Counter(
            "scalelab_requests_refused_busy",
            "Requests refused with 503 because every request thread was in use (the reserved ones serve health "
            "and admin only).",
            registry=registry,
        )

    def enter(self) -> None:
        """Take a slot, or raise a 503 ApiError naming the instance and the settings that size it."""
        if self._slots.acquire(timeout=ADMISSION_WAIT_SECONDS):
            return
        self.refused.inc()
        raise ApiError(
            503,
            f"{self.instance} is busy: all {self.limit} request threads are in use (SCALELAB_THREADS; "
            f"{self.reserved} more are kept for health checks and admin); retry after "
            f"{BUSY_RETRY_AFTER_SECONDS} s, or look for a slow dependency",
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )

    def leave(self) -> None:
        """Give the slot back."""
        self._slots.release()
