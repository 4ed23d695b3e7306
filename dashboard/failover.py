"""Measure failover for every kill or pause: detection, the requests it cost, and recovery after a start.

Times come from event timestamps, not from scrapes: the action's own clock reading and the
time the balancing pool recorded its state change (``last_change`` in its status route).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from services.orchestrator.base import InstanceInfo
from services.orchestrator.topology import service_of

from .stack import BALANCING, ServiceError, StackClient

__all__ = ["DETECT_TIMEOUT_SECONDS", "FailoverRecord", "FailoverTracker"]

POLL_SECONDS = 0.05
DETECT_TIMEOUT_SECONDS = 15.0
RECOVER_TIMEOUT_SECONDS = 30.0
# After the pool marks the instance down, requests it cut are retried elsewhere within a few
# milliseconds; counting a little longer makes sure those retries are in the window.
SETTLE_SECONDS = 0.5
POOL_OF = {"gateway": "gateways", "microservice": "microservices"}


@dataclass(frozen=True)
class FailoverRecord:
    """One kill or pause of a balanced instance and what followed it."""

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
    """Watch the balancing pools after kills, pauses, starts and resumes; keep the records."""

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
        """Return whether ``name`` sits behind a balancing pool (gateways and microservices do)."""
        return service_of(name) in BALANCING

    def records(self) -> list[FailoverRecord]:
        """Return every record, newest first."""
        with self._lock:
            return list(reversed(self._records))

    def _update(self, record: FailoverRecord, **changes: object) -> FailoverRecord:
        with self._lock:
            index = next(i for i, r in enumerate(self._records) if r.id == record.id)
            self._records[index] = replace(self._records[index], **changes)  # type: ignore[arg-type]
            return self._records[index]

    # ---------------------------------------------------------------- reading the pools
    def _views(self, name: str) -> list[dict]:
        """Return what every balancing pool says of ``name`` (one entry per pool that lists it)."""
        pools = self.stack.pools(self.stack.instances())
        holder = BALANCING[service_of(name)][0]
        return [
            backend
            for owner, pool in pools.items()
            if service_of(owner) == holder
            for backend in pool.get("backends", [])
            if backend["name"] == name
        ]

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
        holder = BALANCING[service_of(name)][0]
        pool = POOL_OF[service_of(name)]
        for info in self.stack.instances():
            if service_of(info.name) != holder or info.state != "running":
                continue
            try:
                for (metric, labels), value in self.stack.metrics(info).items():
                    if metric == "scalelab_backend_retries_total" and dict(labels).get("pool") == pool:
                        retried += value
            except ServiceError:
                continue
        return failed, retried

    # ---------------------------------------------------------------- events
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
        served = sum(view.get("requests_served", 0) for view in self._views(name))
        threading.Thread(target=self._watch_up, args=(record, started, served), daemon=True).start()
        return record

    def _watch_down(self, record: FailoverRecord, baseline: tuple[float, float]) -> None:
        deadline = time.monotonic() + DETECT_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            views = self._views(record.instance)
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
            views = self._views(record.instance)
            if marked_up is None and views and all(view["healthy"] for view in views):
                marked_up = max(view["last_change"] for view in views) - started
                self._update(record, marked_up_after=round(max(marked_up, 0.0), 3))
            if marked_up is not None and sum(view.get("requests_served", 0) for view in views) > served_before:
                self._update(record, serving_after=round(self._clock() - started, 3))
                return
            time.sleep(POLL_SECONDS)
        what = "in rotation but served nothing (is load running?)" if marked_up is not None else "not back in rotation"
        self._update(record, note=f"{what} within {RECOVER_TIMEOUT_SECONDS:.0f} s")
