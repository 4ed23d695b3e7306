"""How the panels write a moment and a duration."""

from __future__ import annotations

from datetime import datetime

__all__ = ["clock", "seconds"]


def clock(moment: float) -> str:
    """Return the local time of ``moment`` (seconds since the epoch) to the millisecond."""
    return datetime.fromtimestamp(moment).strftime("%H:%M:%S.%f")[:-3]


def seconds(value: float | None) -> str:
    """Return a duration in seconds to two places, or an ellipsis while it is not known yet."""
    return "…" if value is None else f"{value:.2f} s"
