"""Settings every Flask service shares; each service's config class extends :class:`ServiceSettings`."""

from __future__ import annotations

from dataclasses import dataclass

from .config import ConfigError, setting
from .health import HealthPolicy

__all__ = ["PoolSettings", "ServiceSettings", "parse_backends"]


@dataclass
class ServiceSettings:
    """What every service reads from the environment (a service adds its own fields)."""

    instance: str = setting("", "SCALELAB_INSTANCE", "Instance name in logs, metrics and /health (e.g. gateway-2).")
    host: str = setting("0.0.0.0", "SCALELAB_BIND", "Address to listen on (the launcher uses 127.0.0.1).")
    port: int = setting(0, "", "Port to listen on (each service names its own variable and default).")
    admin_token: str = setting("", "SCALELAB_ADMIN_TOKEN", "Token the control API requires; empty disables it.")
    max_body_bytes: int = setting(1_048_576, "SCALELAB_MAX_BODY_BYTES", "Largest request body accepted (413 above).")
    log_level: str = setting("info", "SCALELAB_LOG_LEVEL", "debug, info, warning or error.")
    server: str = setting("granian", "SCALELAB_SERVER", "WSGI server: granian or gunicorn.")
    worker_class: str = setting("gevent", "SCALELAB_WORKER_CLASS", "gunicorn worker class (gevent or gthread).")
    threads: int = setting(
        4, "SCALELAB_THREADS", "Threads serving requests (granian blocking threads, gthread threads)."
    )
    queued_requests: int = setting(
        128,
        "SCALELAB_QUEUED_REQUESTS",
        "Requests that may wait (up to 5 s) for a busy request thread; past that a request gets 503 at once.",
    )
    reserved_threads: int = setting(
        2,
        "SCALELAB_RESERVED_THREADS",
        "Threads beyond the request threads and the queue that serve only /health, /metrics, /control, "
        "/openapi.json and admin routes, so they answer while every request thread waits (gevent needs none).",
    )

    def admits_by_threads(self) -> bool:
        """Return whether requests run on a fixed pool of threads (not gevent's greenlets), which can run out."""
        return not (self.server == "gunicorn" and self.worker_class == "gevent")

    # Read here for every service (the balancer's settings extend these too); see services/kit/origin.py.
    allowed_hosts: list[str] = setting(
        [],
        "SCALELAB_ALLOWED_HOSTS",
        "Host names it answers to besides localhost, 127.0.0.1, [::1] and its instance name, comma separated "
        "(* for any: only for a lab room that opens its ports on purpose).",
    )


@dataclass
class PoolSettings:
    """How a tier balances and health-checks its backends (shared by the balancer and the gateways)."""

    algorithm: str = setting(
        "round_robin", "SCALELAB_ALGORITHM", "round_robin, least_connections, power_of_two or weighted_round_robin."
    )
    health_interval: float = setting(0.25, "SCALELAB_HEALTH_INTERVAL", "Seconds between health checks of a backend.")
    health_timeout: float = setting(0.3, "SCALELAB_HEALTH_TIMEOUT", "Seconds a health check may take.")
    health_fall: int = setting(2, "SCALELAB_HEALTH_FALL", "Failed checks in a row that mark a backend down.")
    health_rise: int = setting(2, "SCALELAB_HEALTH_RISE", "Passed checks in a row that mark it up again.")
    breaker_failures: int = setting(
        0,
        "SCALELAB_BREAKER_FAILURES",
        "Failed answers in a row (5xx or none) that open a backend's circuit breaker; 0 switches breakers off.",
    )
    breaker_cooldown_seconds: float = setting(
        5.0, "SCALELAB_BREAKER_COOLDOWN_SECONDS", "Seconds an open breaker waits before it lets one trial through."
    )
    discover_interval: float = setting(
        1.0,
        "SCALELAB_DISCOVER_INTERVAL",
        "Seconds between DNS lookups of a pool's backends, where a *_DISCOVER variable names them (Swarm, Kubernetes).",
    )
    upstream_timeout: float = setting(
        10.0,
        "SCALELAB_UPSTREAM_TIMEOUT",
        "Seconds to wait for a backend's answer: the balancer's wait for a gateway. A gateway's own calls "
        "use its GATEWAY_*_TIMEOUT settings within GATEWAY_REQUEST_BUDGET_SECONDS, which must stay below this.",
    )

    def health_policy(self) -> HealthPolicy:
        """Return the health-check policy these settings describe."""
        return HealthPolicy(self.health_interval, self.health_timeout, self.health_fall, self.health_rise)


def parse_backends(entries: list[str], env: str) -> list[tuple[str, str]]:
    """Parse ``name=url`` entries (as in ``GATEWAY_BACKENDS``) into ``(name, url)`` pairs."""
    backends = []
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or not name.strip() or not url.strip().startswith("http://"):
            raise ConfigError(f"{env}: expected name=http://host:port entries separated by commas, got {entry!r}")
        backends.append((name.strip(), url.strip()))
    return backends
