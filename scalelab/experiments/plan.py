"""The seeded request plan: the load profile and its seed decide every request, in order.

What "the same sequence" means: the plan is a numbered list of requests (``seq`` 0, 1, 2, ...),
each an endpoint, a method, a key and a body. Request ``n`` depends only on the seed, the mix,
``hot_keys`` and ``repeat``, never on timing, so two runs with the same seed hand out the same
list. The users take requests from it strictly in ``seq`` order; with one user that is also the
order on the wire, with several it is the order in which they are sent off (answers may overlap).
A duration-limited run uses a prefix of the list: how long the prefix is depends on how fast
the stack answers (or, with a ``rate``, is fixed: request ``n`` is due at ``n / rate`` s).

New keys (``data_new``) are sent with a per-run prefix (the run's ``namespace``, in
summary.json) so that they are cache misses in every run; the plan and requests.csv carry the
key without it.

This module imports nothing heavy: the load driver (a gevent process) uses it too.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from scalelab.experiments.spec import LoadProfile
from scalelab.load import mix

__all__ = ["PlannedRequest", "Schedule", "requests", "sequence", "wire_path"]

PlannedRequest = mix.Request


def requests(profile: LoadProfile) -> Iterator[PlannedRequest]:
    """Yield the plan's requests in order; endless for a duration-limited load."""
    rng = random.Random(profile.seed)
    seq = itertools.count()
    for draw in itertools.count():
        endpoint = mix.draw(rng, profile.mix)
        request = mix.request_for(endpoint, 0, rng, draw, profile.seed, profile.hot_keys, profile.longtask_seconds)
        for _ in range(profile.repeat):
            n = next(seq)
            if profile.requests is not None and n >= profile.requests:
                return
            yield replace(request, seq=n)


def sequence(profile: LoadProfile, limit: int | None = None) -> list[PlannedRequest]:
    """Return the first ``limit`` requests of the plan (all of a count-mode plan when None)."""
    if limit is None and profile.requests is None:
        raise ValueError("a duration-limited plan is endless: give a limit")
    return list(itertools.islice(requests(profile), limit))


def wire_path(request: PlannedRequest, namespace: str) -> str:
    """Return the path and query to send, new keys prefixed with the run's namespace."""
    return request.wire_path(namespace)


class Schedule:
    """Hand out the plan's requests in order, each with the time it is due; None when the load is over.

    With a rate, request ``n`` is due ``n / rate`` s after the start (users late on it send it at
    once), the rate moving as the profile's shape says; without, it is due when taken. A
    duration-limited load ends at ``start + duration``; a count-mode load when the plan is
    exhausted or after ``max_seconds``.
    """

    def __init__(self, profile: LoadProfile, start: float, clock: Callable[[], float] = time.time) -> None:
        self.profile = profile
        self.start = start
        self._clock = clock
        self._requests = requests(profile)
        self.end = start + (profile.duration if profile.duration is not None else profile.max_seconds)
        self.taken = 0
        self.stopped = False
        self._next_due = start  # with a rate: when the next request is due, stepping by the shape's rate then

    def stop(self) -> None:
        """Hand out nothing more."""
        self.stopped = True

    def take(self) -> tuple[PlannedRequest, float] | None:
        """Return the next request and the epoch second it is due, or None when the load is over."""
        now = self._clock()
        if self.stopped or now >= self.end:
            self.stopped = True
            return None
        if self.profile.rate <= 0:
            due = now
        elif self.profile.shape == "constant":
            due = self.start + self.taken / self.profile.rate  # exact: no sum of steps drifts past the end
        else:
            due = self._next_due
        if due >= self.end:
            self.stopped = True
            return None
        request = next(self._requests, None)
        if request is None:
            self.stopped = True
            return None
        self.taken += 1
        if self.profile.rate > 0:
            rate = self.profile.rate_at(due - self.start)
            self._next_due = due + 1 / rate if rate > 0 else self.end
        return request, due
