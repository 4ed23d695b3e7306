"""A circuit breaker per backend: stop sending to one that keeps failing, try it again after a cool-down.

Health checks ask ``/health``; a backend can pass them and still fail every real request (its
dependency is gone, a bug on one route). The breaker watches the answers themselves. Closed, it
counts failed answers in a row (a 5xx or no answer); at the threshold it opens and the pool
skips the backend. After the cool-down it is half-open: one request goes through as a trial.
Its success closes the breaker; its failure opens it again for another cool-down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["BREAKER_STATES", "CLOSED", "HALF_OPEN", "OPEN", "Breaker", "BreakerPolicy"]

CLOSED, HALF_OPEN, OPEN = BREAKER_STATES = ("closed", "half_open", "open")


@dataclass
class BreakerPolicy:
    """When a breaker opens and for how long: ``failures`` in a row (0: never), then ``cooldown`` seconds."""

    failures: int = 0
    cooldown: float = 5.0


class Rules(Protocol):
    """What a breaker asks of its policy (a :class:`BreakerPolicy`, or one computed from others)."""

    @property
    def failures(self) -> int: ...

    @property
    def cooldown(self) -> float: ...


class Breaker:
    """The breaker of one backend. Not thread-safe on its own: the pool calls it under its lock."""

    def __init__(self, policy: Rules) -> None:
        self.policy = policy
        self.state = CLOSED
        self.failures = 0  # failed answers in a row
        self.opened_at = 0.0
        self.trial_out = False  # half-open: the one trial request is on its way
        self.changed = 0  # state changes, for the pool to count

    def allows(self, now: float) -> bool:
        """Return whether a request may go to the backend now (half-open: only when no trial is out)."""
        if self.state == OPEN and now >= self.opened_at + self.policy.cooldown:
            self._go(HALF_OPEN)
        if self.state == HALF_OPEN:
            return not self.trial_out
        return self.state == CLOSED

    def picked(self) -> None:
        """Note that a request was sent: in the half-open state it is the trial."""
        if self.state == HALF_OPEN:
            self.trial_out = True

    def record(self, ok: bool, now: float) -> bool:
        """Count an answer (``ok``: not a 5xx, not a failure to answer); return whether the state changed."""
        before = self.state
        if ok:
            self.failures = 0
            if self.state == HALF_OPEN:
                self._go(CLOSED)
        else:
            self.failures += 1
            if self.state == HALF_OPEN or (
                self.state == CLOSED and self.policy.failures and self.failures >= self.policy.failures
            ):
                self.opened_at = now
                self._go(OPEN)
        if self.state != HALF_OPEN:
            self.trial_out = False
        return self.state != before

    def reset(self) -> None:
        """Close the breaker (it was switched off)."""
        self.failures = 0
        self.trial_out = False
        if self.state != CLOSED:
            self._go(CLOSED)

    def _go(self, state: str) -> None:
        self.state = state
        self.changed += 1
