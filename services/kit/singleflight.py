"""Request coalescing: concurrent calls for the same key share one execution."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["SingleFlight"]


class _Call:
    __slots__ = ("done", "error", "result", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight:
    """Run ``fn`` once per key at a time; callers that arrive meanwhile wait and share its result.

    >>> flight = SingleFlight()
    >>> flight.do("k", lambda: 42)
    (42, False)
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self.coalesced = 0

    def do(self, key: Hashable, fn: Callable[[], Any], wait: float | None = None) -> tuple[Any, bool]:
        """Return ``(result, shared)``; ``shared`` is True when another caller's run produced it.

        An exception raised by ``fn`` is raised in every caller that waited for it. A caller that
        waits for another's run waits at most ``wait`` seconds (None: until it ends), then raises
        TimeoutError; the run itself goes on for the callers still waiting.
        """
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                call.waiters += 1
                self.coalesced += 1
                leader = False
            else:
                call = self._calls[key] = _Call()
                leader = True
        if not leader:
            if not call.done.wait(wait):
                raise TimeoutError(f"gave up after {wait} s waiting for another caller's run for the same key")
            if call.error is not None:
                raise call.error
            return call.result, True
        try:
            call.result = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result, False
