"""What an experiment measures around its actions: failover events from the pools' own timestamps, and counters.

Detection is the time from an action (its own clock reading, taken just before the kill or
pause) to the balancing pool's recorded state change, as :class:`scalelab.failover.PoolWatcher`
saw it; beside each stands the bound the pool's health-check settings predict.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scalelab import catalog
from scalelab.experiments.records import Record
from scalelab.experiments.timeline import Executed
from scalelab.failover import DOWN_VERBS, SETTLE_SECONDS, UP_VERBS, PoolWatcher, balanced, holder_of
from scalelab.stack import ServiceError, StackClient

__all__ = [
    "CPU_PREFIX",
    "FailoverEvent",
    "counter_deltas",
    "counters",
    "cpu_per_request",
    "cpu_seconds",
    "failover_events",
    "failover_metrics",
]


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


COUNTERS = {"database_reads": "scalelab_gateway_database_reads_total", "retries": "scalelab_backend_retries_total"}


def counters(stack: StackClient) -> dict[str, dict[str, float]] | None:
    """Return the database-read and retry counters of each running instance that holds a pool, by instance.

    None when one of them cannot be read (say, from outside a compose network): a sum over the
    others would look like a measurement and be wrong.
    """
    holders = {pool.holder for _service, pool in catalog.pool_holders()}  # the balancer and the gateways
    read = _totals(stack, holders, tuple(COUNTERS.values()))
    if read is None:
        return None
    return {name: {instance: totals[metric] for instance, totals in read.items()} for name, metric in COUNTERS.items()}


def _totals(stack: StackClient, services: set[str], metrics: tuple[str, ...]) -> dict[str, dict[str, float]] | None:
    """Return the totals of ``metrics`` for each running instance of ``services``; None if one cannot be read."""
    totals = {}
    for info in stack.instances():
        if info.state != "running" or info.service not in services:
            continue
        try:
            samples = stack.metrics(info)
        except ServiceError:
            return None
        totals[info.name] = {
            metric: sum(value for (sample, _), value in samples.items() if sample == metric) for metric in metrics
        }
    return totals


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


# The per-tier cost of a request: ``cpu_ms_per_request.gateway`` is the CPU time every gateway
# spent during the load, in milliseconds, divided by the answered requests.
CPU_PREFIX = "cpu_ms_per_request."
CPU_METRIC = "process_cpu_seconds_total"


def cpu_seconds(stack: StackClient) -> dict[str, float] | None:
    """Return the CPU seconds each running lab instance has spent so far, by instance.

    None when one cannot be read (from outside a compose network, say): a sum over the others
    would be a wrong measurement.
    """
    read = _totals(stack, {svc.name for svc in catalog.lab_services()}, (CPU_METRIC,))
    return None if read is None else {instance: totals[CPU_METRIC] for instance, totals in read.items()}


def cpu_per_request(before: dict[str, float] | None, after: dict[str, float] | None, answered: int) -> dict[str, float]:
    """Return each tier's CPU milliseconds per answered request, from instances read both times.

    An instance restarted in between starts from zero again; its part counts as none.
    """
    if before is None or after is None or answered <= 0:
        return {}
    by_service: dict[str, float] = {}
    for instance, value in after.items():
        if instance in before:
            service = catalog.service_of(instance)
            by_service[service] = by_service.get(service, 0.0) + max(0.0, value - before[instance])
    return {f"{CPU_PREFIX}{service}": 1000 * seconds / answered for service, seconds in sorted(by_service.items())}


def _first_change(watcher: PoolWatcher, pool: str, instance: str, healthy: bool, since: float) -> float | None:
    for transition in watcher.transitions:
        same = transition.pool == pool and transition.backend == instance and transition.healthy == healthy
        if same and transition.at >= since:
            return transition.at
    return None


def _served_again(records: Sequence[Record], instance: str, since: float) -> float | None:
    # The entry names the instance behind it in X-Served-By; deeper ones name themselves in the answer.
    attribute = "served_by" if balanced(instance) and holder_of(instance) == catalog.entry().name else "instance"
    answers = [r.answered_at for r in records if r.ok and r.sent_at >= since and getattr(r, attribute) == instance]
    return min((at for at in answers if at is not None), default=None)


def failover_events(
    executed: Sequence[Executed], watcher: PoolWatcher, records: Sequence[Record]
) -> list[FailoverEvent]:
    """Return one event per kill or pause of a balanced instance, with its detection and recovery times."""
    events: list[FailoverEvent] = []
    for index, action in enumerate(executed):
        if action.verb not in DOWN_VERBS or not action.ok or not balanced(action.target):
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
