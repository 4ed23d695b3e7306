"""HTTP metrics for Flask services, following the Prometheus naming conventions."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, g, request
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = [
    "HTTP_METHODS",
    "LATENCY_BUCKETS",
    "METRICS_CONTENT_TYPE",
    "HttpMetrics",
    "exposition",
    "instrument_flask",
    "method_label",
]

# No ``*_created`` series: no query, rule or panel reads them, and they were a tenth of every
# scrape, which Prometheus ingests every second from every instance.
disable_created_metrics()

# The classic text format: what Prometheus 2.42 (Debian's) and every later version read.
METRICS_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Return the registry's samples and the content type to serve them with."""
    return generate_latest(registry), METRICS_CONTENT_TYPE


# Seconds; fine at the low end because cache hits take about a millisecond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# The methods a label may name; any other (a client may send "FOO" or a new one per request) is
# "other", so no request can add a label value, and with it a time series, to the service.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    """Return the ``method`` label for an HTTP method: itself when standard, ``other`` otherwise."""
    return method if method in HTTP_METHODS else OTHER_METHOD


class HttpMetrics:
    """Request count, duration and in-flight gauge for one service, labelled by route (never by raw path)."""

    def __init__(self, service: str, instance: str, registry: CollectorRegistry) -> None:
        # What this instance costs: process_cpu_seconds_total, process_resident_memory_bytes, open files.
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "scalelab_http_requests", "HTTP requests served, by route, method and status.",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "scalelab_http_request_duration_seconds", "Time to serve an HTTP request, by route.",
            ["route"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.in_flight = Gauge("scalelab_http_requests_in_flight", "HTTP requests being served.", registry=registry)
        info = Gauge(
            "scalelab_instance_info", "Which service and instance this is.", ["service", "instance"], registry=registry
        )
        info.labels(service, instance).set(1)

        # Label lookups cost more than the increments on the hot path: keep the children.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one finished request (an unknown ``method`` is counted as ``other``)."""
        method = method_label(method)
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route, method, str(status)),
                self.duration.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)


def instrument_flask(app: Flask, metrics: HttpMetrics) -> None:
    """Count and time every request the app serves, including the ones that fail."""

    @app.before_request
    def _start() -> None:
        g.scalelab_started = time.perf_counter()
        metrics.in_flight.inc()

    @app.after_request
    def _finish(response):  # type: ignore[no-untyped-def]
        started = g.pop("scalelab_started", None)
        if started is not None:
            metrics.in_flight.dec()
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe(rule, request.method, response.status_code, time.perf_counter() - started)
        return response
