"""The log of control actions pressed on the page, also exported as metrics for Grafana annotations."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Action", "ActionLog"]

KEEP_ACTIONS = 500


@dataclass(frozen=True)
class Action:
    """One button press: what, on which target, when, and how it ended."""

    id: int
    time: float
    kind: str  # kill, start, pause, resume, add, remove, knob, load-start, load-stop
    target: str
    detail: str = ""
    outcome: str = "pending"  # pending, ok, failed
    message: str = ""
    finished: float | None = None

    @property
    def label(self) -> str:
        """Return the marker text drawn on the charts (``kill gateway-2``)."""
        return " ".join(part for part in (self.kind, self.target, self.detail) if part)


class ActionLog:
    """Every action with its outcome, newest last; thread-safe."""

    def __init__(self, registry: CollectorRegistry, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._actions: deque[Action] = deque(maxlen=KEEP_ACTIONS)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._count = Counter(
            "scalelab_control_actions",
            "Control actions pressed on the page, by kind, target and outcome.",
            ["action", "target", "outcome"],
            registry=registry,
        )
        # The time of the latest action per kind and target: Grafana draws an annotation at the
        # series' value (as a timestamp), which works from the first sample of a new series on.
        self._last = Gauge(
            "scalelab_control_action_last_timestamp_seconds",
            "When the latest action of this kind and target started.",
            ["action", "target"],
            registry=registry,
        )

    def begin(self, kind: str, target: str, detail: str = "") -> Action:
        """Record that an action starts now and return it."""
        action = Action(next(self._ids), self._clock(), kind, target, detail)
        with self._lock:
            self._actions.append(action)
        self._last.labels(kind, target).set(action.time)
        return action

    def finish(self, action: Action, ok: bool, message: str = "") -> Action:
        """Record how ``action`` ended and return the updated entry."""
        done = replace(action, outcome="ok" if ok else "failed", message=message, finished=self._clock())
        with self._lock:
            for index, existing in enumerate(self._actions):
                if existing.id == action.id:
                    self._actions[index] = done
        self._count.labels(action.kind, action.target, done.outcome).inc()
        return done

    def recent(self, since: float | None = None) -> list[Action]:
        """Return the actions started at or after ``since`` (all kept ones without it), oldest first."""
        with self._lock:
            return [action for action in self._actions if since is None or action.time >= since]

    def latest(self) -> Action | None:
        """Return the newest action, if any."""
        with self._lock:
            return self._actions[-1] if self._actions else None
