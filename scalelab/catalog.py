"""What the stack is: its services, their ports, pools and knobs, written once.

Plain data and the standard library only, so that anything may import it (the launcher, the
compose and Prometheus generators, the page, the CLI, experiments). Everything that needs to
know which services exist, where they listen, who balances whom or which knobs they have
derives it from :data:`SERVICES`; nothing else lists them.

A service's instances are named after it: ``gateway-1``, ``gateway-2`` for a service with
several standard instances or one that scales, the bare service name (``cache``) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "ALGORITHMS",
    "COALESCING",
    "EXTRA_PORT_BASE",
    "SERVICES",
    "SHEDDING",
    "Calls",
    "CatalogError",
    "Knob",
    "Pool",
    "Service",
    "balanced",
    "entry",
    "find_knob",
    "index_of",
    "instance_names",
    "lab_services",
    "pool_holders",
    "scalable",
    "service",
    "service_of",
    "standard_ports",
]

# Instances added at runtime (scalelab add) get ports from here up.
EXTRA_PORT_BASE = 5100
# The balancing algorithms every pool offers (services/kit/algorithms.py; a test keeps them equal).
ALGORITHMS = ("round_robin", "least_connections", "power_of_two", "weighted_round_robin")
# How far a gateway coalesces concurrent reads of one missing key (services/gateway/cache_aside.py).
COALESCING = ("off", "per_gateway", "across_gateways")
# How a gateway sheds load (services/kit/shedding.py).
SHEDDING = ("off", "fixed", "adaptive")

Runs = Literal["service", "loadgen", "prometheus", "dashboard", "grafana"]
# What "yields" means (Service.yields_cpu): local processes run at this niceness and containers get
# these CPU shares (Docker's default is 1024). Each local instance is a session group of its own,
# and the kernel weighs groups, not processes: at nice 10 (weight 110) the twelve instances together
# outweighed the page's group (1,024) under full-blast load; at 19 (weight 15) they weigh 180.
YIELDING_NICE = 19
YIELDING_CPU_SHARES = 256
KnobKind = Literal["switch", "number", "choice"]


class CatalogError(LookupError):
    """A name the catalog does not know; the message lists the ones it does."""


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Knob:
    """A runtime setting a service lets ``PUT /control`` change, as the page and experiments show it."""

    name: str  # as the service's control route names it
    kind: KnobKind
    default: Any
    label: str  # on the page
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float = 1.0
    choices: tuple[str, ...] = ()
    switch: tuple[str, str] | None = None  # a choice that was a switch: false and true name these two
    per_instance: bool = False  # the page sets it on one chosen instance, not on all of them
    on_page: bool = True  # a row of the page's knobs (the others are set by experiments and the API)

    def coerce(self, value: Any) -> Any:
        """Return ``value`` as this knob takes it; raise ValueError saying what it takes otherwise."""
        if self.kind == "switch":
            if not isinstance(value, bool):
                raise ValueError(f"{self.label} is on or off, not {value!r}")
            return value
        if self.kind == "choice":
            if self.switch is not None and isinstance(value, bool):
                return self.switch[value]
            if value not in self.choices:
                raise ValueError(f"{self.label} is one of {', '.join(self.choices)}, not {value!r}")
            return value
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{self.label} takes a number, not {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"{self.label} takes a number, not {value!r}")
        low = -math.inf if self.minimum is None else self.minimum
        high = math.inf if self.maximum is None else self.maximum
        if not low <= number <= high:
            raise ValueError(f"{self.label} must be from {low:g} to {high:g}{' ' + self.unit if self.unit else ''}")
        return number


@dataclass(frozen=True)
class Pool:
    """The pool that balances a service's instances: who holds it and the routes that read and change it."""

    holder: str  # the service whose every instance holds such a pool
    label: str  # the ``pool`` label of its metrics
    status_route: str  # GET: the backends with their health and in-flight requests
    members_route: str  # POST {name, url} adds a backend; DELETE <route>/<name> removes one
    members_env: str  # the holder's variable listing the members at start (name=url,...)
    # The holder's variable naming a DNS name and port (``tasks.<service>:<port>``) whose A records are the members,
    # re-resolved every few seconds: how Docker Swarm and Kubernetes (headless Services) hand the pool its backends.
    discover_env: str = ""


@dataclass(frozen=True)
class Calls:
    """How a service counts its calls to one dependency: a counter of its own, and the label values that are calls."""

    metric: str
    labels: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))  # label -> any of


@dataclass(frozen=True)
class Service:
    """One service of the stack and how it runs."""

    name: str
    runs: Runs  # "service": python -m services PACKAGE; the others are the lab's own helpers
    ports: tuple[int, ...]  # one per standard instance (the classic lab's ports)
    title: str  # the page's row for it
    package: str = ""  # services/<package> (runs == "service")
    config_class: str = ""  # its settings class in services/<package>/config.py
    port_env: str = ""  # the variable its port is read from
    id_env: str = ""  # the variable its instance number is read from (the id it reports)
    threads: int | None = None  # request threads (SCALELAB_THREADS)
    depends_on: tuple[str, ...] = ()  # started after, and healthy before, this one
    links: Mapping[str, str] = field(default_factory=_frozen)  # variable -> service whose URL it holds
    calls: Mapping[str, Calls] = field(default_factory=_frozen)  # linked service -> how its calls are counted
    data_files: Mapping[str, str] = field(default_factory=_frozen)  # variable -> file in the data directory
    needs_jwt_secret: bool = False
    entry: bool = False  # where clients (and the load) come in
    scales: bool = False  # scalelab add / remove work on it
    max_instances: int = 1
    pool: Pool | None = None  # the pool that balances its instances, if any
    knobs: tuple[Knob, ...] = ()
    health_path: str = "/health"
    published: bool = False  # reachable from the host when it runs in containers (on loopback)
    local: bool = True  # started by `scalelab up` (Grafana runs in containers only)
    controllable: bool = True  # the page offers kill, pause, resume and start for it
    scraped: bool = True  # serves /metrics for the stack's Prometheus job
    # What one container may use (compose, swarm, Kubernetes): cores and memory. Local processes share the machine.
    cpus: float | None = None
    memory_mb: int | None = None

    @property
    def yields_cpu(self) -> bool:
        """Whether it runs below the page and Prometheus in CPU priority: the services and the load engine.

        On two cores a full-blast load takes every cycle; the control page and Prometheus must still
        answer at once, or a press shows seconds late (6.5 to 10 s, measured, before this).
        """
        return self.runs in ("service", "loadgen")

    def knob(self, name: str) -> Knob:
        """Return this service's knob ``name``; raise CatalogError naming the known ones."""
        for knob in self.knobs:
            if knob.name == name:
                return knob
        known = ", ".join(k.name for k in self.knobs) or "none"
        raise CatalogError(f"{self.name} has no knob {name!r}; known: {known}")


def _latency(label: str, default: float, step: float, per_instance: bool = False) -> Knob:
    return Knob(
        "latency_ms" if not per_instance else "extra_latency_ms",
        "number",
        default,
        label,
        "ms",
        0,
        60_000,
        step,
        per_instance=per_instance,
    )


def _error_rate(label: str, per_instance: bool = False) -> Knob:
    return Knob("error_rate", "number", 0.0, label, "share", 0, 1, 0.05, per_instance=per_instance)


def _algorithm(label: str) -> Knob:
    return Knob("algorithm", "choice", "round_robin", label, choices=ALGORITHMS)


# Dependencies first: each service finds what it calls already listening.
SERVICES: tuple[Service, ...] = (
    Service(
        "database",
        "service",
        (5002,),
        "Data and async",
        package="database",
        config_class="DatabaseConfig",
        port_env="DATABASE_PORT",
        threads=32,  # its requests mostly wait on the simulated latency
        cpus=0.5,
        memory_mb=256,
        data_files=_frozen({"DATABASE_PATH": "database.sqlite3"}),
        knobs=(
            _latency("Database latency", 50.0, 5),
            Knob("jitter_ms", "number", 10.0, "Database jitter", "ms", 0, 60_000, 5, on_page=False),
            _error_rate("Database error rate"),
        ),
    ),
    Service(
        "cache",
        "service",
        (5004,),
        "Data and async",
        package="cache",
        config_class="CacheConfig",
        port_env="CACHE_PORT",
        threads=4,  # quick work only, where fewer threads contend less
        cpus=0.5,
        memory_mb=256,
        published=True,
        knobs=(
            Knob("default_ttl_seconds", "number", 30.0, "Cache default TTL", "s", 0.001, 86_400, 0.5, on_page=False),
            Knob("lease_seconds", "number", 2.0, "Cache lease on a missing key", "s", 0.01, 60, 0.5, on_page=False),
        ),
    ),
    Service(
        "worker",
        "service",
        (5005,),
        "Data and async",
        package="worker",
        config_class="WorkerConfig",
        port_env="WORKER_PORT",
        threads=8,
        cpus=0.5,
        memory_mb=256,
        data_files=_frozen({"WORKER_QUEUE_PATH": "tasks.sqlite3"}),
        published=True,
        knobs=(
            Knob("task_seconds", "number", 2.0, "Task duration", "s", 0, 60, 0.5, on_page=False),
            Knob("error_rate", "number", 0.0, "Task error rate", "share", 0, 1, 0.05, on_page=False),
        ),
    ),
    Service(
        "microservice",
        "service",
        (5001, 5006, 5007),
        "Microservices",
        package="microservice",
        config_class="MicroserviceConfig",
        port_env="MICROSERVICE_PORT",
        id_env="MICROSERVICE_ID",
        threads=32,  # a /process call mostly waits out its service time
        cpus=0.5,
        memory_mb=256,
        scales=True,
        max_instances=16,
        pool=Pool(
            "gateway",
            "microservices",
            "/pool/status",
            "/pool/backends",
            "GATEWAY_MICROSERVICES",
            "GATEWAY_MICROSERVICES_DISCOVER",
        ),
        knobs=(
            Knob("service_time_ms", "number", 10.0, "Microservice service time", "ms", 0, 60_000, 10, on_page=False),
            _latency("its extra latency", 0.0, 10, per_instance=True),
            _error_rate("its error rate", per_instance=True),
            # sleep: capacity from threads that wait; cpu: from cores, so an instance added helps until they run out.
            Knob("work", "choice", "sleep", "Microservice work", choices=("sleep", "cpu", "both")),
            Knob("cpu_work_ms", "number", 5.0, "Microservice CPU work per call", "ms", 0, 10_000, 1, on_page=False),
            # Servers of each instance's queue: with the service time, a capacity the machine's speed does not change.
            Knob(
                "concurrency", "number", 0.0, "Microservice servers (0: no limit)", "calls", 0, 10_000, 1, on_page=False
            ),
        ),
    ),
    Service(
        "gateway",
        "service",
        (5000, 5003),
        "Gateways",
        package="gateway",
        config_class="GatewayConfig",
        port_env="GATEWAY_PORT",
        id_env="GATEWAY_ID",
        threads=32,  # each request waits on the cache, the database or a microservice
        cpus=1.0,
        memory_mb=384,
        depends_on=("cache", "database", "worker", "microservice"),
        links=_frozen(
            {"GATEWAY_CACHE_URL": "cache", "GATEWAY_DATABASE_URL": "database", "GATEWAY_WORKER_URL": "worker"}
        ),
        # The traffic map's paths to its dependencies: lookups that asked the cache, database reads, task routes.
        calls=MappingProxyType(
            {
                "cache": Calls("scalelab_gateway_cache_lookups_total", {"result": ("hit", "miss", "error")}),
                "database": Calls("scalelab_gateway_database_reads_total"),
                "worker": Calls("scalelab_http_requests_total", {"route": ("/longtask", "/task/<task_id>")}),
            }
        ),
        needs_jwt_secret=True,
        scales=True,
        max_instances=8,
        pool=Pool("load-balancer", "gateways", "/lb/status", "/lb/backends", "BALANCER_BACKENDS", "BALANCER_DISCOVER"),
        knobs=(
            Knob("cache_enabled", "switch", True, "Cache"),
            Knob("cache_ttl_seconds", "number", 30.0, "Cache TTL", "s", 0.001, 86_400, 0.5),
            # off; per_gateway: single-flight in each gateway; across_gateways: that, and leases in the cache.
            Knob(
                "coalescing",
                "choice",
                "per_gateway",
                "Request coalescing",
                choices=COALESCING,
                switch=("off", "per_gateway"),
            ),
            _algorithm("Microservice balancing"),
            # Opens a microservice's breaker after this many failed answers in a row; 0: off.
            Knob("breaker_failures", "number", 0.0, "Circuit breaker: failures to open", "", 0, 1000, 1),
            Knob("breaker_cooldown_seconds", "number", 5.0, "Circuit breaker cool-down", "s", 0.1, 600, 0.5),
            # Retries of failed microservice calls per request (services/kit/retrybudget.py), and the backoff.
            Knob("retry_budget", "number", 0.2, "Retry budget (retries per request)", "share", 0, 10, 0.05),
            Knob("retry_backoff_ms", "number", 10.0, "Retry backoff", "ms", 0, 1000, 5, on_page=False),
            # Load shedding (services/kit/shedding.py): off, a fixed concurrency limit, or an adaptive one up to it.
            Knob("shedding", "choice", "off", "Load shedding", choices=SHEDDING),
            Knob("max_in_flight", "number", 16.0, "Concurrency limit (or its ceiling)", "requests", 1, 10_000, 1),
            Knob("client_rate_limit", "number", 0.0, "Rate limit per client (0: none)", "req/s", 0, 100_000, 1),
            Knob("client_burst", "number", 20.0, "Burst per client", "requests", 1, 100_000, 1, on_page=False),
        ),
    ),
    Service(
        "load-balancer",
        "service",
        (8000,),
        "Entry",
        package="balancer",
        config_class="BalancerConfig",
        port_env="BALANCER_PORT",
        cpus=1.0,
        memory_mb=256,
        depends_on=("gateway",),
        entry=True,
        published=True,
        knobs=(_algorithm("Gateway balancing"),),
    ),
    Service(
        "loadgen",
        "loadgen",
        (8089,),  # Locust's own web UI and API
        "Around the stack",
        depends_on=("load-balancer",),
        health_path="/",
        published=True,
    ),
    # Prometheus scrapes itself in a job of its own.
    Service(
        "prometheus", "prometheus", (9090,), "Around the stack", health_path="/-/ready", published=True, scraped=False
    ),
    Service(
        "grafana",
        "grafana",
        (3000,),
        "Around the stack",
        depends_on=("prometheus",),
        health_path="/api/health",
        published=True,
        local=False,
        controllable=False,
        scraped=False,
    ),
    Service(
        "dashboard",
        "dashboard",
        (8050,),  # the control page
        "Around the stack",
        depends_on=("load-balancer", "loadgen", "prometheus"),
        links=_frozen({"DASHBOARD_PROMETHEUS_URL": "prometheus", "DASHBOARD_LOADGEN_URL": "loadgen"}),
        published=True,
        controllable=False,
    ),
)


# ---------------------------------------------------------------------------- lookups


def _by_name(services: tuple[Service, ...] | None = None) -> dict[str, Service]:
    return {s.name: s for s in (SERVICES if services is None else services)}


def service(name: str, services: tuple[Service, ...] | None = None) -> Service:
    """Return the service called ``name``; raise CatalogError naming the known ones."""
    found = _by_name(services).get(name)
    if found is None:
        known = ", ".join(_by_name(services))
        raise CatalogError(f"no service named {name!r}; the stack has {known}")
    return found


def service_of(instance: str) -> str:
    """Return the service an instance name belongs to (``gateway-2`` -> ``gateway``)."""
    base, _, number = instance.rpartition("-")
    return base if number.isdigit() and base else instance


def index_of(instance: str) -> str:
    """Return the instance number as a string id (``gateway-2`` -> ``"2"``)."""
    return instance.rpartition("-")[2]


def instance_names(svc: Service) -> list[str]:
    """Return the names of a service's standard instances (``gateway-1``, ``gateway-2``; or ``cache``)."""
    if len(svc.ports) == 1 and not svc.scales:
        return [svc.name]
    return [f"{svc.name}-{number}" for number in range(1, len(svc.ports) + 1)]


def standard_ports(services: tuple[Service, ...] | None = None, runs: tuple[str, ...] = ("service",)) -> dict[str, int]:
    """Return ``instance -> port`` for the standard instances of the services that run as ``runs``."""
    return {
        name: port
        for svc in (SERVICES if services is None else services)
        if svc.runs in runs
        for name, port in zip(instance_names(svc), svc.ports, strict=True)
    }


def lab_services(services: tuple[Service, ...] | None = None) -> list[Service]:
    """Return the services that run from services/ (``python -m services PACKAGE``), in start order."""
    return [s for s in (SERVICES if services is None else services) if s.runs == "service"]


def entry(services: tuple[Service, ...] | None = None) -> Service:
    """Return the service clients and the load come in through."""
    return next(s for s in (SERVICES if services is None else services) if s.entry)


def balanced(services: tuple[Service, ...] | None = None) -> list[Service]:
    """Return the services whose instances sit behind a pool."""
    return [s for s in (SERVICES if services is None else services) if s.pool is not None]


def scalable(services: tuple[Service, ...] | None = None) -> list[str]:
    """Return the names of the services that scale out and in."""
    return [s.name for s in (SERVICES if services is None else services) if s.scales]


def pool_holders(services: tuple[Service, ...] | None = None) -> Iterator[tuple[Service, Pool]]:
    """Yield ``(balanced service, its pool)`` for every pool in the stack."""
    for svc in balanced(services):
        assert svc.pool is not None
        yield svc, svc.pool


def find_knob(service_name: str, knob: str, services: tuple[Service, ...] | None = None) -> Knob:
    """Return knob ``knob`` of service ``service_name``; raise CatalogError when either is unknown."""
    return service(service_name, services).knob(knob)


def check(services: tuple[Service, ...] | None = None) -> None:
    """Raise CatalogError when the catalog contradicts itself (an unknown or later dependency, a pool
    held by an unknown service, two services on one port)."""
    seen: set[str] = set()
    ports: dict[int, str] = {}
    for svc in SERVICES if services is None else services:
        for dependency in (*svc.depends_on, *svc.links.values()):
            if dependency not in seen:
                raise CatalogError(f"{svc.name} depends on {dependency!r}, which is not listed before it")
        if svc.pool is not None and svc.pool.holder not in _by_name(services):
            raise CatalogError(f"{svc.name}'s pool is held by {svc.pool.holder!r}, which is not in the stack")
        for port in svc.ports:
            if port in ports:
                raise CatalogError(f"{svc.name} and {ports[port]} both use port {port}")
            ports[port] = svc.name
        seen.add(svc.name)
