"""What the load generator saw, as Prometheus metrics: the client's side of every request."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from services.kit.metrics import LATENCY_BUCKETS

__all__ = ["ClientMetrics"]

# Label for requests no gateway answered (connection refused, timeout) or answered without a name.
NOBODY = "none"


class ClientMetrics:
    """Requests by endpoint, status and the gateway that served them, and their latency."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # What the load engine itself costs, as every instance shows (process_cpu_seconds_total, ...).
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "scalelab_loadgen_requests", "Requests the load generator sent, by endpoint, status and serving gateway.",
            ["endpoint", "status", "served_by"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "scalelab_loadgen_request_duration_seconds", "Latency the load generator measured, by endpoint.",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.users = Gauge("scalelab_loadgen_users", "Simulated users running now.", registry=registry)

    def record(self, endpoint: str, response: Any, seconds: float, failed: bool) -> None:
        """Count one request (``response`` may be None when no answer came)."""
        status = getattr(response, "status_code", 0) or 0
        served_by = NOBODY
        if response is not None and getattr(response, "headers", None) is not None:
            served_by = response.headers.get("X-Served-By") or NOBODY
        self.requests.labels(endpoint, str(status), served_by).inc()
        self.duration.labels(endpoint).observe(seconds)
