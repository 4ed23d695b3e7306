"""Checks: compare what an experiment measured with its thresholds, and say which failed and by how much."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scalelab.experiments.spec import Check

__all__ = ["LOWER_IS_BETTER", "METRICS", "SHARE_PREFIX", "CheckResult", "evaluate", "speedup"]

# Every value a variant reports, with what it means. ``share.<name>`` (a gateway's or an
# instance's share of the answered requests) comes on top.
METRICS = {
    "requests": "requests sent",
    "answered": "requests that got an HTTP answer",
    "errors": "requests without a 2xx answer (lost ones included)",
    "error_ratio": "errors / requests",
    "lost": "requests sent but never answered (connection failed, timed out, or still open at the end)",
    "throughput_rps": "answered requests per second",
    "mean_ms": "mean latency of answered requests (ms)",
    "p50_ms": "median latency (ms)",
    "p90_ms": "90th percentile latency (ms)",
    "p95_ms": "95th percentile latency (ms)",
    "p99_ms": "99th percentile latency (ms)",
    "max_ms": "slowest answered request (ms)",
    "ok_p99_ms": "99th percentile latency of the successful (2xx) answers alone (ms)",
    "goodput_rps": "successful (2xx) answers per second",
    "shed": "requests refused with 429 or 503 (rate limited or shed; 503 also when nothing could serve them)",
    "final_p95_ms": "95th percentile latency of the requests sent in the last quarter of the load (ms)",
    "instances_max": "most instances of the autoscaled service during the run",
    "instances_end": "instances of the autoscaled service when its autoscaler stopped",
    "scale_outs": "times the autoscaler added instances",
    "scale_ins": "times the autoscaler removed instances",
    "gateway_imbalance": "largest distance of a gateway's share from an even split (0 = perfectly even)",
    "instance_imbalance": "largest distance of a microservice instance's share from an even split",
    "cache_hit_ratio": "/data answers served from the cache / all /data answers",
    "hit_mean_ms": "mean latency of /data cache hits (ms)",
    "miss_mean_ms": "mean latency of /data cache misses (ms)",
    "cache_speedup": "miss_mean_ms / hit_mean_ms",
    "database_reads": "reads the gateways sent to the database during the load",
    "retries": "requests the pools retried on another backend during the load",
    "detection_seconds": "longest time from a kill or pause until every balancing pool marked the instance down",
    "predicted_detection_seconds": "the health-check bound: fall x (interval + timeout)",
    "recovery_seconds": "longest time from a start or resume until every pool had the instance up again",
    "serving_seconds": "longest time from a start or resume until the instance answered a request again",
    "failover_failed": "requests that failed while a killed or paused instance was being detected",
}
SHARE_PREFIX = "share."
# Metrics where less is better; speedups divide the baseline by the variant for these.
LOWER_IS_BETTER = frozenset(
    {"errors", "error_ratio", "lost", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms",
     "gateway_imbalance", "instance_imbalance", "hit_mean_ms", "miss_mean_ms", "database_reads", "retries",
     "ok_p99_ms", "shed", "final_p95_ms", "detection_seconds", "predicted_detection_seconds", "recovery_seconds",
     "serving_seconds", "failover_failed"}
)  # fmt: skip


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: the measured value, where it was measured, and whether it passed."""

    label: str  # e.g. "p99_ms <= 500"
    metric: str
    value: float | None
    variant: str | None  # where the value comes from (the worst variant for a check on every variant)
    passed: bool
    message: str  # a sentence a student can read

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


def speedup(metric: str, baseline: float | None, variant: float | None) -> float | None:
    """Return how many times ``metric`` improved from ``baseline`` to ``variant`` (None when not measurable)."""
    if baseline is None or variant is None:
        return None
    numerator, denominator = (baseline, variant) if metric in LOWER_IS_BETTER else (variant, baseline)
    if denominator <= 0:
        return None if numerator <= 0 else float("inf")
    return numerator / denominator


def _fmt(value: float | None) -> str:
    if value is None:
        return "not measured"
    if value == float("inf"):
        return "infinite"
    return f"{value:.4g}"


def _bounds(check: Check) -> str:
    parts = [f"{op} {bound:g}" for op, bound in ((">=", check.min), ("<=", check.max)) if bound is not None]
    return " and ".join(parts)


def _within(check: Check, value: float) -> bool:
    return (check.min is None or value >= check.min) and (check.max is None or value <= check.max)


def _margin(check: Check, value: float) -> float:
    """Return how far ``value`` sits inside its bounds (negative: outside by that much)."""
    margins = []
    if check.max is not None:
        margins.append(check.max - value)
    if check.min is not None:
        margins.append(value - check.min)
    return min(margins)


def _worst(check: Check, values: dict[str, float]) -> tuple[str, float]:
    # The variant nearest its bound, or furthest outside it: that is the one a reader must see.
    name = min(values, key=lambda n: _margin(check, values[n]))
    return name, values[name]


def evaluate(checks: tuple[Check, ...] | list[Check], variants: Mapping[str, Mapping[str, Any]]) -> list[CheckResult]:
    """Evaluate every check against the metrics of each variant (``{variant: {metric: value}}``)."""
    results = []
    for check in checks:
        label = check.describe()
        if check.metric == "speedup":
            assert check.of is not None and check.baseline is not None and check.variant is not None
            value = speedup(
                check.of, variants.get(check.baseline, {}).get(check.of), variants.get(check.variant, {}).get(check.of)
            )
            passed = value is not None and _within(check, value)
            message = f"{check.of} improved {_fmt(value)}x from {check.baseline!r} to {check.variant!r}"
            if not passed:
                message += f", not {_bounds(check)}"
            results.append(CheckResult(label, check.metric, value, check.variant, passed, message))
            continue
        scope = [check.variant] if check.variant else list(variants)
        measured = {
            name: float(variants[name][check.metric])
            for name in scope
            if variants.get(name, {}).get(check.metric) is not None
        }
        if not measured:
            where = f" in {check.variant!r}" if check.variant else ""
            results.append(
                CheckResult(label, check.metric, None, check.variant, False, f"{check.metric} was not measured{where}")
            )
            continue
        variant, value = _worst(check, measured)
        passed = all(_within(check, v) for v in measured.values())
        where = f" in {variant!r}" if len(variants) > 1 or check.variant else ""
        if passed:
            message = f"{check.metric} was {_fmt(value)}{where}"
        elif check.max is not None and value > check.max:
            message = f"{check.metric} was {_fmt(value)}{where}, above the maximum {check.max:g}"
        else:
            message = f"{check.metric} was {_fmt(value)}{where}, below the minimum {check.min:g}"
        results.append(CheckResult(label, check.metric, value, variant, passed, message))
    return results
