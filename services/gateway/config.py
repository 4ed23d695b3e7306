"""Gateway settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import PoolSettings, ServiceSettings, setting

DEFAULT_MICROSERVICES = [
    "microservice-1=http://127.0.0.1:5001",
    "microservice-2=http://127.0.0.1:5006",
    "microservice-3=http://127.0.0.1:5007",
]


@dataclass
class GatewayConfig(ServiceSettings, PoolSettings):
    """Settings of one API gateway instance."""

    port: int = setting(5000, "GATEWAY_PORT", "Port of this gateway instance.")
    gateway_id: str = setting("1", "GATEWAY_ID", "The id responses report as gateway_id.")
    jwt_secret: str = setting(
        "", "SCALELAB_JWT_SECRET", "HS256 secret for client tokens (required; same on every gateway)."
    )
    token_lifetime_seconds: float = setting(
        3600.0, "SCALELAB_TOKEN_LIFETIME_SECONDS", "How long a token from /token is valid."
    )
    cache_url: str = setting("http://127.0.0.1:5004", "GATEWAY_CACHE_URL", "Base URL of the cache service.")
    database_url: str = setting("http://127.0.0.1:5002", "GATEWAY_DATABASE_URL", "Base URL of the database service.")
    worker_url: str = setting("http://127.0.0.1:5005", "GATEWAY_WORKER_URL", "Base URL of the worker.")
    microservices: list[str] = setting(
        DEFAULT_MICROSERVICES, "GATEWAY_MICROSERVICES", "name=url of each microservice instance, comma separated."
    )
    microservices_discover: str = setting(
        "",
        "GATEWAY_MICROSERVICES_DISCOVER",
        "host:port whose DNS records are the microservices (tasks.microservice and its port on Docker Swarm), "
        "re-resolved every SCALELAB_DISCOVER_INTERVAL; when set, GATEWAY_MICROSERVICES is not used.",
    )
    cache_enabled: bool = setting(True, "GATEWAY_CACHE_ENABLED", "Start with cache-aside on.")
    cache_ttl_seconds: float = setting(30.0, "GATEWAY_CACHE_TTL_SECONDS", "TTL of entries the gateway stores.")
    coalescing: str = setting(
        "per_gateway",
        "GATEWAY_COALESCING",
        "Start with request coalescing off, per_gateway (single-flight in each gateway) or across_gateways "
        "(that, and the cache's leases); true and false still mean per_gateway and off.",
    )
    request_budget_seconds: float = setting(
        8.0,
        "GATEWAY_REQUEST_BUDGET_SECONDS",
        "Most seconds one request may take at this gateway, every call and retry included; an "
        "X-Request-Deadline header (epoch seconds) may shorten it. Must stay below SCALELAB_UPSTREAM_TIMEOUT "
        "(the balancer's wait for a gateway), so the gateway answers 504 naming the slow hop before the "
        "balancer gives up.",
    )
    cache_timeout: float = setting(
        0.5,
        "GATEWAY_CACHE_TIMEOUT",
        "Seconds to wait for the cache before going to the database (less when the request's budget has less left).",
    )
    database_timeout: float = setting(
        5.0,
        "GATEWAY_DATABASE_TIMEOUT",
        "Seconds to wait for the database per read (less when the request's budget has less left).",
    )
    microservice_timeout: float = setting(
        5.0,
        "GATEWAY_MICROSERVICE_TIMEOUT",
        "Seconds to wait for one microservice per attempt; a failed GET goes to another one while the "
        "request's budget lasts.",
    )
    worker_timeout: float = setting(
        2.0,
        "GATEWAY_WORKER_TIMEOUT",
        "Seconds to wait for the worker to store or look up a task (less when the request's budget has less left).",
    )
    cache_retry_seconds: float = setting(
        1.0, "GATEWAY_CACHE_RETRY_SECONDS", "After a cache failure, skip the cache this long."
    )
    shedding: str = setting(
        "off",
        "GATEWAY_SHEDDING",
        "Start with load shedding off, fixed (at most GATEWAY_MAX_IN_FLIGHT client requests at once) or "
        "adaptive (a latency-based limit up to that); the excess gets 503 and Retry-After.",
    )
    max_in_flight: int = setting(
        16, "GATEWAY_MAX_IN_FLIGHT", "The fixed concurrency limit, and the adaptive one's ceiling."
    )
    client_rate_limit: float = setting(
        0.0,
        "GATEWAY_CLIENT_RATE_LIMIT",
        "Requests a second each client (each token) may send through this gateway; 0: no limit. "
        "The excess gets 429 and Retry-After.",
    )
    client_burst: float = setting(
        20.0, "GATEWAY_CLIENT_BURST", "Requests a client may send at once before its rate limit applies."
    )
    retry_budget: float = setting(
        0.2,
        "GATEWAY_RETRY_BUDGET",
        "Retries of failed microservice calls allowed per request (a share; 5 a second more whatever the load), "
        "so that in an outage retries cannot multiply the load.",
    )
    retry_backoff_ms: float = setting(
        10.0,
        "GATEWAY_RETRY_BACKOFF_MS",
        "Most milliseconds to wait before the first retry (a random wait up to it: jitter), doubling per retry.",
    )
