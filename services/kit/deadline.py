"""Request deadlines: one time budget per request, shared by every call the request makes.

A service answering a request gives it a budget (e.g. the gateway's 8 s). A caller may shorten
it with an ``X-Request-Deadline`` header: the time, in epoch seconds, after which it no longer
wants the answer. Each call the request makes then waits at most what is left of the budget
(or its own cap, when smaller), carries the deadline on in the same header, and once the budget
is spent no call or retry starts: the request ends with a 504 naming what it was waiting for.

Each hop passes on its deadline less :data:`HOP_MARGIN_SECONDS`, so every hop's budget is
smaller than its caller's: the one that runs out first answers a 504 naming what it waited
for, while its caller is still listening. A service with no budget of its own (the database,
a microservice) only honours the caller's header, with :data:`NO_BUDGET` when there is none.

>>> deadline = Deadline.after(2.0)
>>> 0 < deadline.timeout(cap=0.5, waiting_for="the cache") <= 0.5
True
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import ApiError
from .inputs import shown

__all__ = ["DEADLINE_HEADER", "HOP_MARGIN_SECONDS", "NO_BUDGET", "Deadline"]

DEADLINE_HEADER = "X-Request-Deadline"
# Time a hop keeps for itself out of its deadline: enough to turn the next hop's silence into
# its own 504 and send it back, over loopback or a container network.
HOP_MARGIN_SECONDS = 0.05
NO_BUDGET = math.inf
# Epoch seconds with an optional fraction, ASCII only: float() would also take "nan", "inf",
# "1e400" or Arabic digits, none of which is a time.
EPOCH_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


@dataclass(frozen=True)
class Deadline:
    """The moment a request's budget runs out, on a monotonic ``clock``."""

    expires: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)
    wall: Callable[[], float] = field(default=time.time, compare=False, repr=False)
    # The setting a user raises for more time, named in the 504.
    setting: str = field(default="GATEWAY_REQUEST_BUDGET_SECONDS", compare=False, repr=False)

    @classmethod
    def after(
        cls, seconds: float, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> Deadline:
        """Return the deadline ``seconds`` from now."""
        return cls(clock() + seconds, clock, wall)

    @classmethod
    def from_header(
        cls,
        value: str | None,
        budget: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        setting: str = "GATEWAY_REQUEST_BUDGET_SECONDS",
    ) -> Deadline:
        """Return a request's deadline: ``budget`` seconds from now, or sooner when ``value`` (the header) says so.

        ``setting`` names what sets ``budget``, for the 504's advice.

        Raise a 400 ApiError naming the header when ``value`` is not epoch seconds.
        """
        seconds = budget
        if value is not None:
            text = value.strip()
            if not EPOCH_SECONDS.fullmatch(text):
                raise ApiError(
                    400,
                    f"{DEADLINE_HEADER} must be the time you stop waiting, in epoch seconds "
                    f"(e.g. {wall() + budget:.3f}), not {shown(value)}",
                    header=DEADLINE_HEADER,
                )
            seconds = min(budget, float(text) - wall())
        return cls(clock() + seconds, clock, wall, setting)

    def remaining(self) -> float:
        """Return the seconds left (0 when spent)."""
        return max(0.0, self.expires - self.clock())

    def expired(self) -> bool:
        """Return whether the budget is spent."""
        return self.clock() >= self.expires

    def timeout(self, cap: float, waiting_for: str) -> float:
        """Return how long the next call may wait: ``cap``, or what is left when less; raise a 504 when nothing is."""
        left = self.expires - self.clock()
        if left <= 0:
            raise self.exceeded(waiting_for)
        return min(cap, left)

    def exceeded(self, waiting_for: str) -> ApiError:
        """Return the 504 for a request whose budget ran out while it waited for ``waiting_for``."""
        return ApiError(
            504,
            f"the request's time budget ran out waiting for {waiting_for}; retry, or allow more time "
            f"({self.setting}, or a later {DEADLINE_HEADER})",
        )

    def wait(self, seconds: float, waiting_for: str, sleep: Callable[[float], None] = time.sleep) -> None:
        """Sleep ``seconds`` (simulated work); when the deadline comes first, sleep until it and raise its 504.

        Nobody is listening after the deadline: the work stops there rather than running on for nothing.
        """
        left = self.expires - self.clock()
        if seconds <= left:
            if seconds > 0:
                sleep(seconds)
            return
        if left > 0:
            sleep(left)
        raise self.exceeded(waiting_for)

    def headers(self) -> dict[str, str]:
        """Return the header that passes this deadline on to the next hop, less the hop margin."""
        at = self.wall() + (self.expires - self.clock()) - HOP_MARGIN_SECONDS
        return {DEADLINE_HEADER: f"{at:.3f}" if math.isfinite(at) else "0"}
