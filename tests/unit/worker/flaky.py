"""A task store that fails on purpose: chosen operations of a TaskQueue raise "database is locked" or another error."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from services.worker.queue import TaskQueue


class FlakyQueue:
    """Wrap ``queue``: each operation named in ``failures`` raises OperationalError that many times first."""

    def __init__(self, queue: TaskQueue, **failures: int) -> None:
        self.queue = queue
        self.failures = failures
        self.raised: dict[str, int] = dict.fromkeys(failures, 0)
        self.errors: dict[str, Callable[[], BaseException]] = {}
        self._lock = threading.Lock()

    def fail(self, raising: Callable[[], BaseException] | None = None, **failures: int) -> None:
        """Make the named operations fail that many more times, with ``raising()`` when given."""
        with self._lock:
            for name, count in failures.items():
                self.failures[name] = self.failures.get(name, 0) + count
                self.raised.setdefault(name, 0)
                if raising is not None:
                    self.errors[name] = raising

    def __getattr__(self, name: str) -> Any:
        operation = getattr(self.queue, name)
        if not callable(operation):
            return operation

        def flaky(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                if self.failures.get(name, 0) > 0:
                    self.failures[name] -= 1
                    self.raised[name] += 1
                    raise self.errors.get(name, lambda: sqlite3.OperationalError("database is locked"))()
            return operation(*args, **kwargs)

        return flaky

    def pending(self) -> Callable[[], bool]:
        """Return a check that every planned failure has been raised."""
        return lambda: all(count == 0 for count in self.failures.values())
