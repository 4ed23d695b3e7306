"""A bounded history of the figures sampled once per refresh, shared by every open page.

Bounded in time (the configured history) and thinned when read, so drawing an hour costs
about what drawing a minute does.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MAX_POINTS", "History", "Sample", "Series"]

# Most points a chart draws per line: more would not show on a page and would slow the browser.
MAX_POINTS = 360


@dataclass(frozen=True)
class Sample:
    """The figures of one moment, by series key (e.g. ``rps``, ``split.gateways.gateway-1``)."""

    time: float
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class Series:
    """One line of a chart: its times and values (None where the figure was missing)."""

    key: str
    times: list[float]
    values: list[float | None]


class History:
    """The last ``seconds`` of samples, oldest first."""

    def __init__(self, seconds: float, interval: float) -> None:
        self.seconds = seconds
        self._samples: deque[Sample] = deque(maxlen=max(2, int(seconds / interval) + 1))
        self._lock = threading.Lock()

    def add(self, sample: Sample) -> None:
        """Append a sample, dropping those older than the history's span."""
        with self._lock:
            self._samples.append(sample)
            while self._samples and self._samples[0].time < sample.time - self.seconds:
                self._samples.popleft()

    def __len__(self) -> int:
        return len(self._samples)

    def latest(self) -> Sample | None:
        """Return the newest sample, if any."""
        with self._lock:
            return self._samples[-1] if self._samples else None

    def window(self, seconds: float, max_points: int = MAX_POINTS) -> list[Sample]:
        """Return the samples of the last ``seconds``, thinned to at most ``max_points``.

        Thinning keeps every n-th sample and always the newest, so the right edge stays current.
        """
        with self._lock:
            if not self._samples:
                return []
            since = self._samples[-1].time - seconds
            picked = [sample for sample in self._samples if sample.time >= since]
        if len(picked) <= max_points:
            return picked
        step = -(-len(picked) // max_points)
        thinned = picked[::-1][::step][::-1]
        return thinned

    @staticmethod
    def series(samples: Iterable[Sample], prefix: str) -> list[Series]:
        """Return one Series per key starting with ``prefix``, in key order, over ``samples``."""
        samples = list(samples)
        keys = sorted({key for sample in samples for key in sample.values if key.startswith(prefix)})
        times = [sample.time for sample in samples]
        return [Series(key, times, [sample.values.get(key) for sample in samples]) for key in keys]
