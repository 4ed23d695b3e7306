"""Balancing algorithms: each picks one backend out of the healthy candidates."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .pool import Backend

__all__ = ["ALGORITHMS", "Algorithm", "make_algorithm"]


class Algorithm(Protocol):
    """Choose a backend from a non-empty list of healthy candidates."""

    def choose(self, candidates: Sequence[Backend]) -> Backend: ...


class RoundRobin:
    """Take the candidates in turn."""

    def __init__(self, rng: random.Random) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        return candidates[next(self._counter) % len(candidates)]


class LeastConnections:
    """Take the candidate with the fewest requests in flight; ties go round robin."""

    def __init__(self, rng: random.Random) -> None:
        self._counter = itertools.count()

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        start = next(self._counter) % len(candidates)
        rotated = list(candidates[start:]) + list(candidates[:start])
        return min(rotated, key=lambda backend: backend.in_flight)


class PowerOfTwoChoices:
    """Sample two candidates at random and take the one with fewer requests in flight."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(list(candidates), 2)
        return first if first.in_flight <= second.in_flight else second


class WeightedRoundRobin:
    """Smooth weighted round robin (as nginx does it): weight 3 vs 1 gives a, a, b, a rather than bursts."""

    def __init__(self, rng: random.Random) -> None:
        self._current: dict[str, int] = {}

    def choose(self, candidates: Sequence[Backend]) -> Backend:
        total = 0
        best: Backend | None = None
        for backend in candidates:
            weight = max(backend.weight, 0)
            current = self._current.get(backend.name, 0) + weight
            self._current[backend.name] = current
            total += weight
            if best is None or current > self._current[best.name]:
                best = backend
        assert best is not None
        self._current[best.name] -= total
        return best


ALGORITHMS: dict[str, type] = {
    "round_robin": RoundRobin,
    "least_connections": LeastConnections,
    "power_of_two": PowerOfTwoChoices,
    "weighted_round_robin": WeightedRoundRobin,
}


def make_algorithm(name: str, rng: random.Random | None = None) -> Algorithm:
    """Return a fresh instance of the algorithm called ``name``."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown balancing algorithm {name!r}; choose one of {sorted(ALGORITHMS)}") from None
    return cls(rng or random.Random())
