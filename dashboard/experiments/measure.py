"""Detection and recovery, timed from event timestamps; counters read from the services around a run.

Detection is the time from an action (its own clock reading, taken just before the kill or
pause) to the balancing pool's recorded state change (``last_change`` in ``/lb/status`` or a
gateway's ``/pool/status``), never a scrape interval. The pools are polled every 50 ms only
to see the change happen; the timestamp is the pool's own. Beside each measured detection
stands the window the pool's health-check settings predict: fall x (interval + timeout).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from services.orchestrator.base import InstanceInfo
from services.orchestrator.topology import service_of

from ..stack import BALANCING, ServiceError, StackClient
from .records import Record
from .timeline import Executed

__all__ = [
    "FailoverEvent",
    "PoolWatcher",
    "Transition",
    "counter_deltas",
    "counters",
    "failover_events",
    "failover_metrics",
]

POLL_SECONDS = 0.05
POLL_TIMEOUT_SECONDS = 0.3
INSTANCES_EVERY_SECONDS = 1.0
COUNTERS_EVERY_SECONDS = 0.25
# After the pools mark an instance down, the requests it cut are retried elsewhere within a few
# milliseconds; counting a little longer makes sure those are in the window.
SETTLE_SECONDS = 0.5
DOWN_VERBS = ("kill", "pause")
UP_VERBS = ("start", "resume")
# Which pool (as the metrics label it) balances each service.
POOL_LABEL = {"gateway": "gateways", "microservice": "microservices"}


@dataclass(frozen=True)
class Transition:
    """A pool's recorded change of one backend's state."""

    pool: str  # the instance holding the pool (load-balancer, gateway-1, ...)
    backend: str
    healthy: bool
    at: float  # the pool's own timestamp (epoch s)


@dataclass(frozen=True)
class FailoverEvent:
    """A kill or pause of a balanced instance, how fast the pools noticed, and how it came back."""

    instance: str
    action: str  # kill or pause
    offset: float | None  # seconds from the load's start
    detected_after: float | None = None  # s until every pool holding it had marked it down
    predicted: float | None = None  # fall x (interval + timeout) of those pools
    failed: int | None = None  # requests that failed while it was being detected
    retried: int | None = None  # requests its pools retried on another backend in that window
    restored_by: str = ""  # start or resume
    restored_offset: float | None = None
    process_up_after: float | None = None  # s until the orchestrator had it running and healthy
    marked_up_after: float | None = None  # s until every pool had it up again
    serving_after: float | None = None  # s until it answered a request again
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return it as JSON-ready data."""
        return asdict(self)


class PoolWatcher:
    """Poll every balancing pool in the background; keep their state changes and retry counters."""

    def __init__(self, stack: StackClient, count_retries: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.stack = stack
        self.count_retries = count_retries
        self._clock = clock
        self.transitions: list[Transition] = []
        self.members: dict[str, set[str]] = {}  # pool -> backends it ever listed
        self.policies: dict[str, dict[str, float]] = {}  # pool -> its health_check settings
        self.retry_samples: list[tuple[float, dict[str, float]]] = []  # (time, {pool owner: retries})
        self._last: dict[tuple[str, str], tuple[bool, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="experiment-pools", daemon=True)
        self._executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="experiment-poll")
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (after the poll under way)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _balancers(self) -> list[tuple[InstanceInfo, str]]:
        return [
            (info, route)
            for info in self.stack.instances()
            for _service, (holder, route) in BALANCING.items()
            if info.service == holder and info.state == "running"
        ]

    def _poll(self, info: InstanceInfo, route: str) -> dict[str, Any] | None:
        try:
            return self.stack.call(info, "GET", route, timeout=POLL_TIMEOUT_SECONDS)
        except ServiceError:
            return None  # a killed or paused gateway has no pool to read

    def _retries(self, info: InstanceInfo) -> float | None:
        try:
            samples = self.stack.metrics(info)
        except ServiceError:
            return None
        return sum(value for (name, _labels), value in samples.items() if name == "scalelab_backend_retries_total")

    def _run(self) -> None:
        balancers: list[tuple[InstanceInfo, str]] = []
        next_instances = next_counters = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_instances:
                balancers = self._balancers()
                next_instances = now + INSTANCES_EVERY_SECONDS
            polls = {info.name: self._executor.submit(self._poll, info, route) for info, route in balancers}
            retries = {}
            if self.count_retries and now >= next_counters:
                retries = {info.name: self._executor.submit(self._retries, info) for info, _ in balancers}
                next_counters = now + COUNTERS_EVERY_SECONDS
            for owner, future in polls.items():
                self._record(owner, future.result())
            if retries:
                sample = {owner: value for owner, f in retries.items() if (value := f.result()) is not None}
                with self._lock:
                    self.retry_samples.append((self._clock(), sample))
            self._stop.wait(max(0.0, POLL_SECONDS - (time.monotonic() - now)))

    def _record(self, owner: str, status: dict[str, Any] | None) -> None:
        if not isinstance(status, dict):
            return
        with self._lock:
            if isinstance(status.get("health_check"), dict):
                self.policies[owner] = status["health_check"]
            for backend in status.get("backends", []):
                name = backend["name"]
                self.members.setdefault(owner, set()).add(name)
                state = (bool(backend["healthy"]), float(backend["last_change"]))
                if self._last.get((owner, name)) != state:
                    if (owner, name) in self._last:
                        self.transitions.append(Transition(owner, name, state[0], state[1]))
                    self._last[(owner, name)] = state

    def predicted(self, pools: Sequence[str]) -> float | None:
        """Return the longest detection bound of ``pools``: fall x (interval + timeout)."""
        bounds = [
            policy["fall"] * (policy["interval_seconds"] + policy["timeout_seconds"])
            for pool, policy in self.policies.items()
            if pool in pools
        ]
        return round(max(bounds), 3) if bounds else None

    def holders(self, instance: str) -> list[str]:
        """Return the pools that balance ``instance`` (those that listed it while watched)."""
        holder = BALANCING.get(service_of(instance), ("",))[0]
        return sorted(pool for pool, names in self.members.items() if instance in names and service_of(pool) == holder)

    def _sample_at(self, when: float) -> dict[str, float] | None:
        chosen = None
        for at, sample in self.retry_samples:
            if at > when:
                break
            chosen = sample
        return chosen

    def retries_between(self, start: float, end: float, pools: Sequence[str]) -> int | None:
        """Return how many requests ``pools`` retried between the samples at ``start`` and ``end``.

        Only pools read at both times count (a restarted gateway's counters start from zero).
        """
        before, after = self._sample_at(start), self._sample_at(end)
        if before is None or after is None:
            return None
        return int(sum(max(0.0, after[pool] - before[pool]) for pool in pools if pool in before and pool in after))


COUNTERS = {"database_reads": "scalelab_gateway_database_reads_total", "retries": "scalelab_backend_retries_total"}


def counters(stack: StackClient) -> dict[str, dict[str, float]] | None:
    """Return the database-read and retry counters of each running gateway and balancer, by instance.

    None when one of them cannot be read (say, from outside a compose network): a sum over the
    others would look like a measurement and be wrong.
    """
    readings: dict[str, dict[str, float]] = {name: {} for name in COUNTERS}
    for info in stack.instances():
        if info.state != "running" or info.service not in ("gateway", "load-balancer"):
            continue
        try:
            samples = stack.metrics(info)
        except ServiceError:
            return None
        for name, metric in COUNTERS.items():
            readings[name][info.name] = sum(value for (sample, _), value in samples.items() if sample == metric)
    return readings


def counter_deltas(
    before: dict[str, dict[str, float]] | None, after: dict[str, dict[str, float]] | None
) -> dict[str, float | None]:
    """Return how much each counter grew, summed over the instances read both times.

    An instance restarted in between starts from zero again; its part counts as no growth.
    """
    if before is None or after is None:
        return dict.fromkeys(COUNTERS)
    return {
        name: sum(
            max(0.0, value - before[name][instance])
            for instance, value in after[name].items()
            if instance in before[name]
        )
        for name in COUNTERS
    }


def _first_change(watcher: PoolWatcher, pool: str, instance: str, healthy: bool, since: float) -> float | None:
    for transition in watcher.transitions:
        same = transition.pool == pool and transition.backend == instance and transition.healthy == healthy
        if same and transition.at >= since:
            return transition.at
    return None


def _served_again(records: Sequence[Record], instance: str, since: float) -> float | None:
    attribute = "served_by" if service_of(instance) == "gateway" else "instance"
    answers = [r.answered_at for r in records if r.ok and r.sent_at >= since and getattr(r, attribute) == instance]
    return min((at for at in answers if at is not None), default=None)


def failover_events(
    executed: Sequence[Executed], watcher: PoolWatcher, records: Sequence[Record]
) -> list[FailoverEvent]:
    """Return one event per kill or pause of a balanced instance, with its detection and recovery times."""
    events: list[FailoverEvent] = []
    for index, action in enumerate(executed):
        if action.verb not in DOWN_VERBS or not action.ok or service_of(action.target) not in BALANCING:
            continue
        instance, started = action.target, action.started
        pools = watcher.holders(instance)
        downs = [_first_change(watcher, pool, instance, False, started) for pool in pools]
        event = FailoverEvent(instance, action.verb, action.offset, predicted=watcher.predicted(pools))
        notes = []
        if pools and all(at is not None for at in downs):
            detected = max(at for at in downs if at is not None)
            window_end = detected + SETTLE_SECONDS
            in_window = [
                r for r in records if r.sent_at <= window_end and (r.answered_at is None or r.answered_at >= started)
            ]
            event = _replace(
                event,
                detected_after=round(detected - started, 3),
                failed=sum(1 for r in in_window if not r.ok),
                retried=watcher.retries_between(started, window_end, pools),
            )
        else:
            notes.append(f"not marked down by every pool ({', '.join(pools) or 'no pool seen'})")
        restore = next((a for a in executed[index + 1 :] if a.verb in UP_VERBS and a.target == instance and a.ok), None)
        if restore is not None:
            ups = [_first_change(watcher, pool, instance, True, restore.started) for pool in pools]
            marked = max(ups) if pools and all(at is not None for at in ups) else None  # type: ignore[type-var]
            serving = _served_again(records, instance, restore.started)
            event = _replace(
                event,
                restored_by=restore.verb,
                restored_offset=restore.offset,
                process_up_after=round(restore.finished - restore.started, 3),
                marked_up_after=None if marked is None else round(marked - restore.started, 3),
                serving_after=None if serving is None else round(serving - restore.started, 3),
            )
            if marked is None:
                notes.append("not back in every pool before the run ended")
        event = _replace(event, note="; ".join(notes))
        events.append(event)
    return events


def _replace(event: FailoverEvent, **changes: Any) -> FailoverEvent:
    return FailoverEvent(**{**asdict(event), **changes})


def failover_metrics(events: Sequence[FailoverEvent]) -> dict[str, float | None]:
    """Return the variant-level failover metrics: the worst detection, recovery and serving times.

    One event that was never detected (or never came back) makes its metric unmeasured, so a
    check on it fails rather than passing on the other events alone.
    """

    def worst(values: list[float | None]) -> float | None:
        if not values or any(value is None for value in values):
            return None
        return max(value for value in values if value is not None)

    if not events:
        return {}
    restored = [event for event in events if event.restored_by]
    return {
        "detection_seconds": worst([event.detected_after for event in events]),
        "predicted_detection_seconds": worst([event.predicted for event in events]),
        "recovery_seconds": worst([event.marked_up_after for event in restored]),
        "serving_seconds": worst([event.serving_after for event in restored]),
        "failover_failed": sum(event.failed or 0 for event in events),
    }
