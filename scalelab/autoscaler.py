"""The autoscaler: a control loop that reads Prometheus and scales a service out and in.

Every ``interval`` seconds it reads one signal for the service from Prometheus:

* ``in_flight``: requests in flight per instance, as the balancing pools count them (averaged
  over a few scrapes). While nothing queues it is ``arrival rate x service time / instances``,
  so it falls in proportion as instances are added: the signal that scales well.
* ``p95_ms``: the instances' own 95th percentile latency. What users feel, but it hardly moves
  until the instances saturate, then it jumps: a target on it tends to oscillate.

Then it decides as Kubernetes' HPA does: ``wanted = ceil(instances x signal / target)``, within
``min_instances`` and ``max_instances``. It scales out when the signal is above the target; it
scales in, one instance at a time, only when the signal is below ``target x (1 - hysteresis)``
and would stay below the target with one instance fewer, so a change does not undo itself.
After each change it waits ``cooldown_seconds`` (the new instance needs time to take load).
Scaling in removes the newest instance first.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from scalelab import catalog

if TYPE_CHECKING:
    import requests

__all__ = [
    "SIGNALS",
    "Autoscaler",
    "AutoscalerError",
    "Decision",
    "PrometheusSignal",
    "ScalingPolicy",
    "decide",
    "newest_first",
    "signal_query",
]

log = logging.getLogger(__name__)

SIGNALS = ("in_flight", "p95_ms")
Signal = Literal["in_flight", "p95_ms"]
QUERY_TIMEOUT_SECONDS = 2.0
# Seconds of scrapes the signal averages over: a few 1 s scrapes, so one odd sample does not scale.
SIGNAL_WINDOW = "3s"
# Routes that are not the service's work: their latency says nothing about its load.
QUIET_ROUTES = "/health|/metrics|/control|/openapi.json"


class AutoscalerError(ValueError):
    """A policy that cannot work, or a signal that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class ScalingPolicy:
    """What to scale, on which signal and target, within which bounds, and how calmly."""

    service: str = "microservice"
    signal: Signal = "in_flight"
    target: float = 1.0  # requests in flight per instance, or ms of p95
    min_instances: int = 0  # 0: the service's standard instance count
    max_instances: int = 0  # 0: the catalog's maximum for the service
    cooldown_seconds: float = 3.0
    hysteresis: float = 0.2
    interval_seconds: float = 1.0

    @classmethod
    def from_fields(cls, fields: dict[str, Any], base: ScalingPolicy | None = None) -> ScalingPolicy:
        """Return ``base`` (the defaults without it) with ``fields`` on top, checked and resolved.

        Raise AutoscalerError naming a field that is unknown or of the wrong type: ``fields`` may
        come from a browser or a command line.
        """
        known = {name: type(value) for name, value in asdict(cls()).items()}
        unknown = sorted(set(fields) - set(known))
        if unknown:
            raise AutoscalerError(f"unknown autoscaler setting(s) {unknown}; known: {', '.join(known)}")
        for name, value in fields.items():
            if known[name] is str:
                if not isinstance(value, str):
                    raise AutoscalerError(f"{name} is a name, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise AutoscalerError(f"{name} is a number, not {value!r}")
            elif known[name] is int and value != int(value):
                raise AutoscalerError(f"{name} is a whole number, not {value!r}")
        typed = {name: known[name](value) for name, value in fields.items()}
        return replace(base or cls(), **typed).resolved()

    def resolved(self) -> ScalingPolicy:
        """Return the policy with its bounds filled in from the catalog; raise AutoscalerError when it cannot work."""
        if self.service not in catalog.scalable():
            raise AutoscalerError(
                f"the autoscaler scales a service that scales ({', '.join(catalog.scalable())}), not {self.service!r}"
            )
        if self.signal not in SIGNALS:
            raise AutoscalerError(f"signal is one of {', '.join(SIGNALS)}, not {self.signal!r}")
        svc = catalog.service(self.service)
        low = self.min_instances or len(svc.ports)
        high = self.max_instances or svc.max_instances
        if not 1 <= low <= high <= svc.max_instances:
            raise AutoscalerError(
                f"{self.service}: need 1 <= min_instances <= max_instances <= {svc.max_instances}, not {low} and {high}"
            )
        numbers = {
            "target": self.target,
            "cooldown_seconds": self.cooldown_seconds,
            "interval_seconds": self.interval_seconds,
        }
        for name, value in numbers.items():
            if not (math.isfinite(value) and value > 0):
                raise AutoscalerError(f"{name} must be a number above 0, not {value}")
        if not 0 <= self.hysteresis < 1:
            raise AutoscalerError(f"hysteresis is a share from 0 to below 1, not {self.hysteresis}")
        return replace(self, min_instances=low, max_instances=high)

    def describe(self) -> str:
        """Return the policy in a line: ``microservice on in_flight, target 1, 3 to 8 instances``."""
        unit = " ms" if self.signal == "p95_ms" else " per instance"
        return (
            f"{self.service} on {self.signal}, target {self.target:g}{unit}, "
            f"{self.min_instances} to {self.max_instances} instances, cool-down {self.cooldown_seconds:g} s"
        )


@dataclass(frozen=True)
class Decision:
    """One scaling decision: when, from how many instances to how many, on what reading, and how it went."""

    time: float
    service: str
    before: int
    after: int
    signal: str
    value: float
    target: float
    instances: tuple[str, ...] = ()  # the instances added or removed
    error: str = ""

    @property
    def verb(self) -> str:
        """Return ``scale-out`` or ``scale-in``."""
        return "scale-out" if self.after > self.before else "scale-in"

    @property
    def label(self) -> str:
        """Return the marker text for the charts: ``scale-out microservice 3→5``."""
        return f"{self.verb} {self.service} {self.before}→{self.after}"

    @property
    def reason(self) -> str:
        """Return why, in words: ``in_flight 2.4 > target 1``."""
        sign = ">" if self.after > self.before else "<"
        return f"{self.signal} {self.value:.3g} {sign} target {self.target:g}"

    def to_dict(self) -> dict[str, Any]:
        """Return it as JSON-ready data."""
        return {**asdict(self), "instances": list(self.instances), "label": self.label, "reason": self.reason}


def decide(policy: ScalingPolicy, instances: int, value: float) -> int:
    """Return how many instances ``policy`` wants with ``instances`` running and the signal at ``value``."""
    if instances < policy.min_instances:
        return policy.min_instances
    if instances > policy.max_instances:
        return policy.max_instances
    if instances == 0:
        return policy.min_instances
    if value > policy.target:
        return min(policy.max_instances, max(instances + 1, math.ceil(instances * value / policy.target)))
    one_fewer = instances - 1
    calm = value < policy.target * (1 - policy.hysteresis)
    if calm and one_fewer >= policy.min_instances and value * instances / max(one_fewer, 1) <= policy.target:
        return one_fewer
    return instances


def signal_query(service: str, signal: str) -> str:
    """Return the PromQL that reads ``signal`` for ``service`` (one number; empty when nothing is known)."""
    svc = catalog.service(service)
    if signal == "in_flight":
        if svc.pool is None:
            raise AutoscalerError(f"{service} is balanced by no pool: in_flight is counted by the pools")
        # Summed over the balancers that send to each instance, then averaged over the instances.
        in_flight = f'scalelab_backend_in_flight{{pool="{svc.pool.label}"}}'
        return f"avg(sum by (backend) (avg_over_time({in_flight}[{SIGNAL_WINDOW}])))"
    return (
        "1000 * histogram_quantile(0.95, sum by (le) (rate("
        f'scalelab_http_request_duration_seconds_bucket{{service="{service}",route!~"{QUIET_ROUTES}"}}[{SIGNAL_WINDOW}])))'
    )


class PrometheusSignal:
    """Read a service's signal from Prometheus' HTTP API."""

    def __init__(self, url: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        # Imported here: experiment specs import this module, and so does the load driver, which must
        # let gevent patch the network modules before anything imports ssl.
        import requests

        self.url = url.rstrip("/")
        self.timeout = timeout
        self._requests = requests
        self._session: requests.Session = requests.Session()

    def read(self, service: str, signal: str) -> float:
        """Return the signal's value now; 0 when no request was seen; raise AutoscalerError when unreadable."""
        query = signal_query(service, signal)
        try:
            response = self._session.get(f"{self.url}/api/v1/query", params={"query": query}, timeout=self.timeout)
            response.raise_for_status()
            result = response.json()["data"]["result"]
        except (self._requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise AutoscalerError(f"Prometheus at {self.url} did not answer the autoscaler's query: {exc}") from None
        if not result:
            return 0.0
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else 0.0  # NaN: no requests in the window, so nothing was slow


def newest_first(names: list[str]) -> list[str]:
    """Return instance names newest (highest number) first: the order scaling in removes them."""
    return sorted(
        names, key=lambda name: int(catalog.index_of(name)) if catalog.index_of(name).isdigit() else 0, reverse=True
    )


Scale = Callable[[str, int], tuple[str, ...]]
Count = Callable[[str], list[str]]


@dataclass
class _State:
    decisions: list[Decision] = field(default_factory=list)
    last_change: float = -math.inf
    last_value: float | None = None
    last_error: str = ""
    instances: int = 0  # running when last counted: at the start, at each step, after each change


class Autoscaler:
    """The control loop: read, decide, scale; a thread between :meth:`start` and :meth:`stop`.

    ``running(service)`` returns the names of the service's running instances (oldest first);
    ``scale(service, change)`` adds ``change`` instances (or removes ``-change``, newest first)
    and returns their names. ``on_decision`` is called after each change, e.g. to mark it on
    the charts.
    """

    def __init__(
        self,
        policy: ScalingPolicy,
        signal: Callable[[str, str], float],
        running: Count,
        scale: Scale,
        on_decision: Callable[[Decision], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy.resolved()
        self._signal = signal
        self._running = running
        self._scale = scale
        self._on_decision = on_decision
        self._clock = clock
        self._state = _State(instances=len(running(self.policy.service)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def decisions(self) -> list[Decision]:
        """Return every decision so far, oldest first."""
        with self._lock:
            return list(self._state.decisions)

    @property
    def enabled(self) -> bool:
        """Return whether the loop runs."""
        return self._thread is not None and self._thread.is_alive()

    def step(self) -> Decision | None:
        """Read the signal once and scale if the policy says so; return the decision, or None when nothing changed."""
        policy = self.policy
        names = self._running(policy.service)
        try:
            value = self._signal(policy.service, policy.signal)
        except AutoscalerError as exc:
            with self._lock:
                self._state.last_error = str(exc)
            log.warning("autoscaler: %s", exc)
            return None
        now = self._clock()
        with self._lock:
            self._state.last_value = value
            self._state.instances = len(names)
            self._state.last_error = ""
            cooling = now - self._state.last_change < policy.cooldown_seconds
        wanted = decide(policy, len(names), value)
        if wanted == len(names) or cooling:
            return None
        error = ""
        changed: tuple[str, ...] = ()
        try:
            changed = self._scale(policy.service, wanted - len(names))
        except Exception as exc:  # an orchestrator error must not end the loop; it is recorded and shown
            error = str(exc)
        before = len(names)
        step = len(changed) if wanted > before else -len(changed)
        # A change that failed outright still says what was wanted; its error says why it did not happen.
        after = before + step if changed else wanted
        decision = Decision(now, policy.service, before, after, policy.signal, value, policy.target, changed, error)
        with self._lock:
            self._state.decisions.append(decision)
            self._state.instances = decision.after if changed else len(names)
            self._state.last_change = self._clock()
        log.info("autoscaler: %s (%s)%s", decision.label, decision.reason, f": {error}" if error else "")
        if self._on_decision is not None:
            self._on_decision(decision)
        return decision

    def status(self) -> dict[str, Any]:
        """Return the loop's state for the page and the CLI."""
        with self._lock:
            state = self._state
            return {
                "enabled": self.enabled,
                "policy": asdict(self.policy),
                "describe": self.policy.describe(),
                # Counted by the loop, not here: the page asks every second and must not ask the orchestrator.
                "instances": state.instances,
                "signal": state.last_value,
                "error": state.last_error,
                "decisions": [decision.to_dict() for decision in state.decisions[-20:]],
            }

    def start(self) -> None:
        """Start the loop in a daemon thread (no-op when it runs)."""
        if self.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="autoscaler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for its current step to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.policy.interval_seconds):
            try:
                self.step()
            except Exception:  # the loop outlives any one failed step; the log says what happened
                log.exception("autoscaler step failed")
