"""The lab's request mix: the endpoints a simulated user calls, their default weights, and each request's shape.

One definition for the live load engine (Locust's swarm form) and for experiments (their
seeded plans). Standard library only: the gevent load processes import it before Locust.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "DEFAULT_HOT_KEYS",
    "DEFAULT_LONGTASK_SECONDS",
    "DEFAULT_MIX",
    "ENDPOINTS",
    "LABELS",
    "Request",
    "draw",
    "option_name",
    "request_for",
]

# What a simulated request can be; mixes are keyed by these.
ENDPOINTS = ("data_hot", "data_new", "process", "longtask")
# How the metrics and Locust's statistics name each endpoint (a bounded set of labels).
LABELS = {
    "data_hot": "/data (hot keys)",
    "data_new": "/data (new keys)",
    "process": "/process",
    "longtask": "/longtask",
}
# Mostly cache-friendly reads, some misses, some routed work and a few async tasks.
DEFAULT_MIX: Mapping[str, float] = {"data_hot": 70, "data_new": 10, "process": 15, "longtask": 5}
DEFAULT_HOT_KEYS = 10
DEFAULT_LONGTASK_SECONDS = 0.5


@dataclass(frozen=True)
class Request:
    """One request to send: which endpoint, how, and (for /data) which key."""

    seq: int
    endpoint: str  # one of ENDPOINTS
    method: str
    path: str
    key: str = ""  # the /data key, without the run's namespace
    body: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """Return the endpoint's label for metrics and statistics."""
        return LABELS[self.endpoint]

    def wire_path(self, namespace: str = "") -> str:
        """Return the path and query to send; new keys get the run's namespace so they miss in every run."""
        if not self.key:
            return self.path
        key = f"{namespace}.{self.key}" if self.endpoint == "data_new" and namespace else self.key
        return f"{self.path}?key={quote(key, safe='')}"


def option_name(endpoint: str) -> str:
    """Return the load engine's option for an endpoint's weight (``data_hot`` -> ``mix_data_hot``)."""
    return f"mix_{endpoint}"


def draw(rng: random.Random, mix: Mapping[str, float]) -> str:
    """Return an endpoint drawn from ``mix`` by weight; raise ValueError when no weight is positive."""
    endpoints = [name for name in ENDPOINTS if mix.get(name, 0) > 0]
    if not endpoints:
        raise ValueError(f"the mix needs a positive weight among {', '.join(ENDPOINTS)}")
    return rng.choices(endpoints, [mix[name] for name in endpoints])[0]


def request_for(
    endpoint: str,
    seq: int,
    rng: random.Random,
    draw_number: int,
    seed: int,
    hot_keys: int = DEFAULT_HOT_KEYS,
    longtask_seconds: float = DEFAULT_LONGTASK_SECONDS,
) -> Request:
    """Return request ``seq`` for ``endpoint``: a hot key from ``rng``, a key never used before, or a task."""
    key, body = "", None
    if endpoint == "data_hot":
        key = f"hot-{rng.randrange(max(1, hot_keys))}"
    elif endpoint == "data_new":
        key = f"new-{seed}-{draw_number}"
    elif endpoint == "longtask":
        body = {"duration": longtask_seconds}
    method = "POST" if endpoint == "longtask" else "GET"
    path = "/data" if endpoint.startswith("data") else f"/{endpoint}"
    return Request(seq, endpoint, method, path, key, body)
