"""Load models and shapes: how requests are paced, shared by experiments and the live load engine.

Standard library only: the load driver and the load engine import it inside gevent processes.
"""

from __future__ import annotations

__all__ = ["MODELS", "SHAPES", "rate_at"]

# closed: each user waits for its answer before it sends again; open: every request goes out when
# it is due, answered or not, and its latency counts from then.
MODELS = ("closed", "open")
# How the rate moves over a load's duration: constant; ramp (from rate to peak_rate); steps (rate,
# then evenly up to peak_rate in `steps` steps); spike (peak_rate through the middle fifth).
SHAPES = ("constant", "ramp", "steps", "spike")


def rate_at(shape: str, rate: float, peak_rate: float, steps: int, duration: float | None, elapsed: float) -> float:
    """Return the requests per second due ``elapsed`` seconds into a load of ``duration`` seconds."""
    if shape == "constant" or not duration:
        return rate
    share = min(max(elapsed / duration, 0.0), 1.0)
    if shape == "ramp":
        return rate + (peak_rate - rate) * share
    if shape == "steps":
        step = min(int(share * steps), steps - 1)
        return rate + (peak_rate - rate) * step / max(steps - 1, 1)
    return peak_rate if 0.4 <= share < 0.6 else rate  # spike
