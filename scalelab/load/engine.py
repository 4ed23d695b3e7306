"""Drive the load engine (Locust, in its own process) through its web API.

The Dash server never generates load itself: it asks Locust to swarm, stop, and report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from scalelab.load import mix, shapes

__all__ = ["MIX_OPTIONS", "LoadEngine", "LoadEngineError", "LoadPlan"]

# The locustfile's options for the request mix, as the swarm form names them.
MIX_OPTIONS = tuple(mix.option_name(endpoint) for endpoint in mix.ENDPOINTS)
MAX_USERS = 500
MAX_RATE = 5_000.0  # requests/s for all users together: far past what one machine's stack answers
MAX_DURATION_SECONDS = 24 * 3600
MAX_HOT_KEYS = 1_000_000
MAX_WEIGHT = 1_000_000


class LoadEngineError(RuntimeError):
    """The load engine is unreachable or refused a request; the message says where and what to do."""


@dataclass(frozen=True)
class LoadPlan:
    """What to ask the load engine for: users, optional target rate and duration, and the mix."""

    users: int = 10
    # Requests/s for all users together; 0 = as fast as the stack answers, which on a small
    # machine takes every core and slows everything else on it, this page included.
    rate: float = 100.0
    duration: int = 0  # seconds; 0 = until stopped
    mix_data_hot: int = int(mix.DEFAULT_MIX["data_hot"])
    mix_data_new: int = int(mix.DEFAULT_MIX["data_new"])
    mix_process: int = int(mix.DEFAULT_MIX["process"])
    mix_longtask: int = int(mix.DEFAULT_MIX["longtask"])
    hot_keys: int = mix.DEFAULT_HOT_KEYS
    model: str = "closed"  # open: each request goes out when due, answered or not (scalelab/load/shapes.py)
    shape: str = "constant"  # ramp, steps or spike: from rate to peak_rate over the duration
    peak_rate: float = 0.0

    def validate(self) -> None:
        """Raise ValueError with a readable message when the plan cannot run."""
        if not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be from 1 to {MAX_USERS}")
        if not 0 <= self.rate <= MAX_RATE:
            raise ValueError(f"target req/s must be from 0 (as fast as answers come) to {MAX_RATE:g}")
        if not 0 <= self.duration <= MAX_DURATION_SECONDS:
            raise ValueError(f"duration must be from 0 (until stopped) to {MAX_DURATION_SECONDS} s")
        weights = [getattr(self, option) for option in MIX_OPTIONS]
        if any(not 0 <= weight <= MAX_WEIGHT for weight in weights) or sum(weights) == 0:
            raise ValueError("the mix needs at least one endpoint with a positive weight")
        if not 1 <= self.hot_keys <= MAX_HOT_KEYS:
            raise ValueError(f"hot keys must be from 1 to {MAX_HOT_KEYS}")
        if self.model not in shapes.MODELS:
            raise ValueError(f"the load model is one of {', '.join(shapes.MODELS)}, not {self.model!r}")
        if self.model == "open" and not self.rate:
            raise ValueError("the open model sends at a rate: give a target req/s above 0")
        if self.shape not in shapes.SHAPES:
            raise ValueError(f"the shape is one of {', '.join(shapes.SHAPES)}, not {self.shape!r}")
        if not 0 <= self.peak_rate <= MAX_RATE:
            raise ValueError(f"peak req/s must be from 0 to {MAX_RATE:g}")
        if self.shape != "constant" and not (self.duration and self.rate and self.peak_rate):
            raise ValueError(f"a {self.shape} runs over the duration from the target req/s to the peak: give all three")

    def form(self, host: str | None) -> dict[str, Any]:
        """Return the form Locust's /swarm expects."""
        form: dict[str, Any] = {
            "user_count": self.users,
            "spawn_rate": self.users,  # all users at once: the chart shows the load, not a ramp
            "hot_keys": self.hot_keys,
            "rate_per_user": round(self.rate / self.users, 6) if self.rate else 0,
            "model": self.model,
            "shape": self.shape,
            "peak_rate": self.peak_rate,
            "shape_seconds": self.duration,
            **{option: getattr(self, option) for option in MIX_OPTIONS},
        }
        if host:
            form["host"] = host
        if self.duration:
            form["run_time"] = f"{self.duration}s"
        return form


class LoadEngine:
    """The Locust process at ``url``."""

    def __init__(self, url: str, timeout: float, target_host: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.target_host = target_host
        self._session = requests.Session()

    def _send(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        try:
            response = self._session.request(method, self.url + path, data=data, timeout=self.timeout)
            response.raise_for_status()
            return response.json()
        except requests.RequestException as exc:
            raise LoadEngineError(
                f"the load engine at {self.url} did not answer {method} {path}: {exc}. "
                "Is the `loadgen` instance running (`scalelab status`)?"
            ) from None

    def start(self, plan: LoadPlan) -> None:
        """Start (or retarget) the swarm; raise ValueError for a bad plan, LoadEngineError if refused."""
        plan.validate()
        answer = self._send("POST", "/swarm", plan.form(self.target_host))
        if not answer.get("success", False):
            raise LoadEngineError(f"the load engine refused to start: {answer.get('message', answer)}")

    def stop(self) -> None:
        """Stop every simulated user."""
        self._send("POST", "/stop")

    def stats(self) -> dict[str, Any]:
        """Return Locust's current statistics (state, users, rates, percentiles, failures)."""
        return self._send("GET", "/stats/requests")
