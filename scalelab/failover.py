"""Failover, measured once for the page and for experiments: detection and recovery from event timestamps.

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
from dataclasses import dataclass, replace
from typing import Any

from scalelab import catalog
from scalelab.catalog import service_of
from scalelab.orchestrators.base import InstanceInfo
from scalelab.stack import ServiceError, StackClient, status_routes

__all__ = [
    "DETECT_TIMEOUT_SECONDS",
    "FailoverRecord",
    "FailoverTracker",
    "PoolWatcher",
    "Transition",
    "backend_views",
    "balanced",
    "detection_bound",
    "holder_of",
]

POLL_SECONDS = 0.05
POLL_TIMEOUT_SECONDS = 0.3
DETECT_TIMEOUT_SECONDS = 15.0
RECOVER_TIMEOUT_SECONDS = 30.0
INSTANCES_EVERY_SECONDS = 1.0
COUNTERS_EVERY_SECONDS = 0.25
# After the pools mark an instance down, the requests it cut are retried elsewhere within a few
# milliseconds; counting a little longer makes sure those are in the window.
SETTLE_SECONDS = 0.5
DOWN_VERBS = ("kill", "pause")
UP_VERBS = ("start", "resume")


def detection_bound(policy: dict[str, Any]) -> float:
    """Return the longest a dead backend stays in rotation under a pool's health checks: fall x (interval + timeout).

    ``policy`` is the ``health_check`` part of a pool's status route.
    """
    return round(policy["fall"] * (policy["interval_seconds"] + policy["timeout_seconds"]), 3)


def balanced(name: str) -> bool:
    """Return whether instance ``name`` sits behind a pool (its failover can be measured)."""
    return service_of(name) in {svc.name for svc in catalog.balanced()}


def holder_of(name: str) -> str:
    """Return the service whose instances hold the pool that balances instance ``name``."""
    pool = catalog.service(service_of(name)).pool
    if pool is None:
        raise catalog.CatalogError(f"{name} is not balanced by any pool")
    return pool.holder


@dataclass(frozen=True)
class Transition:
    """A pool's recorded change of one backend's state."""

    pool: str  # the instance holding the pool (load-balancer, gateway-1, ...)
    backend: str
    healthy: bool
    at: float  # the pool's own timestamp (epoch s)


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
        routes = status_routes()
        return [
            (info, routes[info.service])
            for info in self.stack.instances()
            if info.service in routes and info.state == "running"
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
        bounds = [detection_bound(policy) for pool, policy in self.policies.items() if pool in pools]
        return max(bounds) if bounds else None

    def holders(self, instance: str) -> list[str]:
        """Return the pools that balance ``instance`` (those that listed it while watched)."""
        holder = holder_of(instance) if balanced(instance) else ""
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


def backend_views(stack: StackClient, name: str) -> list[dict[str, Any]]:
    """Return what every pool balancing instance ``name`` says of it (one entry per pool that lists it)."""
    holder = holder_of(name)
    pools = stack.pools(stack.instances())
    return [
        backend
        for owner, pool in pools.items()
        if service_of(owner) == holder
        for backend in pool.get("backends", [])
        if backend["name"] == name
    ]


@dataclass(frozen=True)
class FailoverRecord:
    """One kill or pause of a balanced instance pressed on the page, and what followed it."""

    id: int
    instance: str
    action: str  # kill or pause
    started: float  # wall clock of the action
    detected_after: float | None = None  # s until every balancing pool marked it down
    failed: int | None = None  # requests the load generator saw fail between the action and detection
    retried: int | None = None  # requests the pools retried elsewhere in that window
    restored_by: str | None = None  # start or resume
    marked_up_after: float | None = None  # s from the start until every pool had it up again
    serving_after: float | None = None  # s from the start until it served a request again
    note: str = ""


class FailoverTracker:
    """Watch the balancing pools after each kill, pause, start and resume pressed live; keep the records.

    Unlike :class:`PoolWatcher`, which polls all the time an experiment runs, it polls only
    while an event is being measured: an idle page costs the stack nothing.
    """

    def __init__(
        self,
        stack: StackClient,
        loadgen: Callable[[], InstanceInfo | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stack = stack
        self.loadgen = loadgen
        self._clock = clock
        self._records: list[FailoverRecord] = []
        self._lock = threading.Lock()

    @staticmethod
    def tracks(name: str) -> bool:
        """Return whether ``name`` sits behind a balancing pool."""
        return balanced(name)

    def records(self) -> list[FailoverRecord]:
        """Return every record, newest first."""
        with self._lock:
            return list(reversed(self._records))

    def _update(self, record: FailoverRecord, **changes: Any) -> FailoverRecord:
        with self._lock:
            index = next(i for i, r in enumerate(self._records) if r.id == record.id)
            self._records[index] = replace(self._records[index], **changes)
            return self._records[index]

    def _counters(self, name: str) -> tuple[float, float]:
        """Return (failed requests the load generator saw, retries in the instance's pools) so far."""
        failed = 0.0
        loadgen = self.loadgen()
        if loadgen is not None:
            try:
                for (metric, labels), value in self.stack.metrics(loadgen).items():
                    status = dict(labels).get("status", "")
                    if metric == "scalelab_loadgen_requests_total" and (status == "0" or status.startswith("5")):
                        failed += value
            except ServiceError:
                pass
        retried = 0.0
        pool = catalog.service(service_of(name)).pool
        assert pool is not None
        for info in self.stack.instances():
            if info.service != pool.holder or info.state != "running":
                continue
            try:
                for (metric, labels), value in self.stack.metrics(info).items():
                    if metric == "scalelab_backend_retries_total" and dict(labels).get("pool") == pool.label:
                        retried += value
            except ServiceError:
                continue
        return failed, retried

    def on_down(self, name: str, action: str, started: float) -> FailoverRecord:
        """Record a kill or pause done at ``started`` and measure it in the background."""
        with self._lock:
            record = FailoverRecord(len(self._records) + 1, name, action, started)
            self._records.append(record)
        baseline = self._counters(name)
        threading.Thread(target=self._watch_down, args=(record, baseline), daemon=True).start()
        return record

    def on_up(self, name: str, action: str, started: float) -> FailoverRecord | None:
        """Record the start or resume (at ``started``) that ends the newest open record of ``name``."""
        with self._lock:
            open_ = [r for r in self._records if r.instance == name and r.restored_by is None]
        if not open_:
            return None
        record = self._update(open_[-1], restored_by=action)
        served = sum(view.get("requests_served", 0) for view in backend_views(self.stack, name))
        threading.Thread(target=self._watch_up, args=(record, started, served), daemon=True).start()
        return record

    def _watch_down(self, record: FailoverRecord, baseline: tuple[float, float]) -> None:
        deadline = time.monotonic() + DETECT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            views = backend_views(self.stack, record.instance)
            if views and all(not view["healthy"] and view["last_change"] >= record.started for view in views):
                detected = max(view["last_change"] for view in views) - record.started
                time.sleep(SETTLE_SECONDS)
                failed, retried = self._counters(record.instance)
                self._update(
                    record,
                    detected_after=round(detected, 3),
                    failed=int(failed - baseline[0]),
                    retried=int(retried - baseline[1]),
                )
                return
            time.sleep(POLL_SECONDS)
        self._update(record, note=f"not marked down within {DETECT_TIMEOUT_SECONDS:.0f} s")

    def _watch_up(self, record: FailoverRecord, started: float, served_before: int) -> None:
        deadline = time.monotonic() + RECOVER_TIMEOUT_SECONDS
        marked_up = None
        while time.monotonic() < deadline:
            views = backend_views(self.stack, record.instance)
            if marked_up is None and views and all(view["healthy"] for view in views):
                marked_up = max(view["last_change"] for view in views) - started
                self._update(record, marked_up_after=round(max(marked_up, 0.0), 3))
            if marked_up is not None and sum(view.get("requests_served", 0) for view in views) > served_before:
                self._update(record, serving_after=round(self._clock() - started, 3))
                return
            time.sleep(POLL_SECONDS)
        what = "in rotation but served nothing (is load running?)" if marked_up is not None else "not back in rotation"
        self._update(record, note=f"{what} within {RECOVER_TIMEOUT_SECONDS:.0f} s")
