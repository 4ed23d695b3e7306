"""Per-request records: one row per request sent, written as CSV, and the statistics drawn from them.

Imports only the standard library: the load driver (a gevent process) writes these rows.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["COLUMNS", "Record", "read_csv", "request_metrics", "shares", "write_csv"]


@dataclass(frozen=True)
class Record:
    """What happened to one planned request."""

    variant: str
    seq: int
    sent_at: float  # epoch seconds, when it was sent
    latency_ms: float | None  # None when it got no answer
    status: int  # HTTP status; 0 when no answer came (lost)
    endpoint: str
    key: str = ""
    served_by: str = ""  # the gateway, from the balancer's X-Served-By header
    gateway_id: str = ""
    instance: str = ""  # the microservice instance that did /process (its "instance" field)
    service_id: str = ""
    cached: bool | None = None  # /data only: answered from the cache
    error: str = ""

    @property
    def ok(self) -> bool:
        """Return whether the request got a 2xx answer."""
        return 200 <= self.status < 300

    @property
    def answered_at(self) -> float | None:
        """Return the epoch second the answer arrived, or None when none did."""
        return None if self.latency_ms is None else self.sent_at + self.latency_ms / 1000


COLUMNS = tuple(field.name for field in fields(Record))
# The answers that refuse work early: a client's rate limit (429) or load shedding (503).
SHED_STATUSES = (429, 503)


def write_csv(path: str | Path, records: Iterable[Record]) -> None:
    """Write records as CSV with a header row (empty cells for missing values)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        for record in records:
            row = asdict(record)
            row["latency_ms"] = "" if record.latency_ms is None else f"{record.latency_ms:.3f}"
            row["sent_at"] = f"{record.sent_at:.6f}"
            row["cached"] = "" if record.cached is None else str(record.cached).lower()
            writer.writerow(row)


def read_csv(path: str | Path) -> list[Record]:
    """Read records written by :func:`write_csv`."""
    with open(path, newline="") as handle:
        return [
            Record(
                variant=row["variant"],
                seq=int(row["seq"]),
                sent_at=float(row["sent_at"]),
                latency_ms=float(row["latency_ms"]) if row["latency_ms"] else None,
                status=int(row["status"]),
                endpoint=row["endpoint"],
                key=row["key"],
                served_by=row["served_by"],
                gateway_id=row["gateway_id"],
                instance=row["instance"],
                service_id=row["service_id"],
                cached=None if not row["cached"] else row["cached"] == "true",
                error=row["error"],
            )
            for row in csv.DictReader(handle)
        ]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the ``q``-th percentile (nearest rank) of sorted ``values``; None when empty."""
    if not values:
        return None
    rank = max(1, math.ceil(q / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


def shares(records: Iterable[Record], attribute: str) -> dict[str, float]:
    """Return each value of ``attribute`` (served_by or instance) as a share of the answered requests naming one."""
    counts = Counter(getattr(r, attribute) for r in records if r.ok and getattr(r, attribute))
    total = sum(counts.values())
    return {name: counts[name] / total for name in sorted(counts)} if total else {}


def _imbalance(split: dict[str, float]) -> float | None:
    if not split:
        return None
    even = 1 / len(split)
    return max(abs(share - even) for share in split.values())


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def request_metrics(records: Sequence[Record]) -> dict[str, Any]:
    """Return the request statistics of one variant's records (see checks.METRICS for their meaning)."""
    answered = [r for r in records if r.latency_ms is not None]
    latencies = sorted(r.latency_ms for r in answered if r.latency_ms is not None)
    errors = sum(1 for r in records if not r.ok)
    metrics: dict[str, Any] = {
        "requests": len(records),
        "answered": len(answered),
        "errors": errors,
        "error_ratio": errors / len(records) if records else None,
        "lost": sum(1 for r in records if r.status == 0),
        "throughput_rps": None,
        "mean_ms": _mean(latencies),
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": latencies[-1] if latencies else None,
    }
    # What the clients got done: latency and rate of the successful answers alone, the refused ones apart.
    good = sorted(r.latency_ms for r in answered if r.ok and r.latency_ms is not None)
    metrics["ok_p99_ms"] = percentile(good, 99)
    metrics["shed"] = sum(1 for r in records if r.status in SHED_STATUSES)
    metrics["goodput_rps"] = None
    metrics["final_p95_ms"] = None
    if records:
        # The last quarter of the load: where a tactic that adapts (an autoscaler) should have caught up.
        first, last = min(r.sent_at for r in records), max(r.sent_at for r in records)
        late = first + 0.75 * (last - first)
        metrics["final_p95_ms"] = percentile(
            sorted(r.latency_ms for r in answered if r.sent_at >= late and r.latency_ms is not None), 95
        )
    if answered:
        window = max(r.answered_at or r.sent_at for r in answered) - min(r.sent_at for r in records)
        metrics["throughput_rps"] = len(answered) / window if window > 0 else None
        metrics["goodput_rps"] = len(good) / window if window > 0 else None
    gateways = shares(records, "served_by")
    instances = shares(records, "instance")
    metrics["gateway_imbalance"] = _imbalance(gateways)
    metrics["instance_imbalance"] = _imbalance(instances)
    for name, share in {**gateways, **instances}.items():
        metrics[f"share.{name}"] = share
    hits = [r.latency_ms for r in answered if r.ok and r.cached is True and r.latency_ms is not None]
    misses = [r.latency_ms for r in answered if r.ok and r.cached is False and r.latency_ms is not None]
    metrics["cache_hit_ratio"] = len(hits) / (len(hits) + len(misses)) if hits or misses else None
    metrics["hit_mean_ms"] = _mean(hits)
    metrics["miss_mean_ms"] = _mean(misses)
    hit_mean, miss_mean = metrics["hit_mean_ms"], metrics["miss_mean_ms"]
    metrics["cache_speedup"] = miss_mean / hit_mean if hit_mean and miss_mean is not None else None
    return metrics
