"""Where the live figures come from: Prometheus when it answers, else the services' own /metrics.

Both sources return the same series keys, so the charts do not care which one is in use:

``rps``, ``errors`` (5xx at the balancer), ``failed`` (failures the load generator saw),
``p50``/``p95``/``p99`` (seconds, at the balancer), ``split.<pool>.<name>`` for each pool of the
catalog (``split.gateways.gateway-1``, ``split.microservices.microservice-3``: requests/s each
instance was sent), ``cache.hit_ratio`` (share of the gateways' /data lookups answered by the
cache), ``db.qps`` and ``worker.queue``; what each instance costs, the instance's name following:
``cpu.``/``memory.`` from its process, and in containers ``container.cpu.``,
``container.memory.`` and the container's limits (``container.cpu_limit.``,
``container.memory_limit.``) as the Docker engine counts them (from Prometheus only).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

import requests

from scalelab import catalog
from scalelab.catalog import service_of
from scalelab.containerstats import INSTANCE_LABEL as CONTAINER_INSTANCE_LABEL
from scalelab.generate.scrape import LAB_JOB
from scalelab.orchestrators.base import InstanceInfo
from scalelab.stack import ServiceError, StackClient

__all__ = [
    "CALLS_PREFIX",
    "CONTAINER_CPU_LIMIT_PREFIX",
    "CONTAINER_CPU_PREFIX",
    "CONTAINER_MEMORY_LIMIT_PREFIX",
    "CONTAINER_MEMORY_PREFIX",
    "CPU_PREFIX",
    "DEPENDENCY_CALLS",
    "EDGE_SEPARATOR",
    "MEMORY_PREFIX",
    "POOLS",
    "QUERIES",
    "DirectSource",
    "PrometheusSource",
    "SourceUnavailable",
    "edge_error_prefix",
    "edge_prefix",
    "histogram_quantile",
    "scraped_services",
    "split_prefix",
]

# Where clients come in: its proxied requests are the stack's traffic, errors and latency.
ENTRY = catalog.entry().name
PROXIED = f'service="{ENTRY}",route="proxy"'
# Every pool with its balanced service, in the order a request travels (the entry's pool first).
POOLS: list[tuple[catalog.Service, catalog.Pool]] = list(reversed(list(catalog.pool_holders())))


# Keys of what each instance costs, the instance's name following: CPU % of one core, resident memory in bytes.
CPU_PREFIX = "cpu."
MEMORY_PREFIX = "memory."
# The same as the Docker engine counts it for the instance's container (everything in it), and the container's
# limits: cores, and bytes. Only containers with limits have the last two.
CONTAINER_CPU_PREFIX = "container.cpu."
CONTAINER_MEMORY_PREFIX = "container.memory."
CONTAINER_CPU_LIMIT_PREFIX = "container.cpu_limit."
CONTAINER_MEMORY_LIMIT_PREFIX = "container.memory_limit."


def split_prefix(pool: catalog.Pool) -> str:
    """Return the key prefix of a pool's requests/s per member (``split.gateways.``; the member's name follows)."""
    return f"split.{pool.label}."


def edge_prefix(pool: catalog.Pool) -> str:
    """Return the key prefix of the requests/s each pool holder sends each member (``edge.gateways.``).

    The key ends in ``holder>member``: ``edge.gateways.load-balancer>gateway-2``.
    """
    return f"edge.{pool.label}."


def edge_error_prefix(pool: catalog.Pool) -> str:
    """Return the key prefix of the failed requests/s (5xx or no answer) on each holder-to-member path."""
    return f"edge_errors.{pool.label}."


# A gateway's calls per second to each dependency, by gateway (the gateway's name follows the prefix).
CALLS_PREFIX = "calls."
EDGE_SEPARATOR = ">"


def scraped_services() -> list[str]:
    """Return the services whose /metrics the direct source reads.

    Every lab service but the pools' leaves (balanced, holding no pool): their requests are
    counted by the pool that sends them, and they are the ones that scale out to many.
    """
    holders = {pool.holder for _svc, pool in catalog.pool_holders()}
    leaves = {svc.name for svc in catalog.balanced() if svc.name not in holders}
    return [svc.name for svc in catalog.lab_services() if svc.name not in leaves]


# Rates over the last two 1 s scrapes (irate): a chart that refreshes every second should move
# within a second or two of the change, not smear it over a 10 s window.


def _rate(metric: str, labels: str = "", by: str = "") -> str:
    if by:
        return f"sum by ({by}) (irate({metric}{{{labels}}}[3s]))"
    # Nothing counted yet is a rate of zero, not a gap in the chart.
    return f"(sum(irate({metric}{{{labels}}}[3s])) or vector(0))"


def _per_container(aggregate: str, expr: str) -> str:
    # The page exports the containers' figures under container_instance (its own target's instance label is
    # "dashboard"): the instance label becomes the container's, and with it the key's suffix.
    return f'{aggregate} by (instance) (label_replace({expr}, "instance", "$1", "{CONTAINER_INSTANCE_LABEL}", "(.+)"))'


def _quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le) (rate(scalelab_http_request_duration_seconds_bucket{{{PROXIED}}}[5s])))"
    )


def _edges(labels: str) -> str:
    # One series per (holder instance, member): joined into the backend label, the key's suffix.
    rates = f"sum by (instance, backend) (irate(scalelab_backend_requests_total{{{labels}}}[3s]))"
    return f'label_join({rates}, "backend", "{EDGE_SEPARATOR}", "instance", "backend")'


# Who calls which dependency, and how each call is counted (the catalog's ``calls``): (caller, dependency, calls).
DEPENDENCY_CALLS = [
    (svc.name, dependency, calls) for svc in catalog.lab_services() for dependency, calls in svc.calls.items()
]


def _calls_selector(caller: str, calls: catalog.Calls) -> str:
    matchers = [f'service="{caller}"'] + [f'{label}=~"{"|".join(values)}"' for label, values in calls.labels.items()]
    return f"{calls.metric}{{{','.join(matchers)}}}"


QUERIES: dict[str, str] = {
    "rps": _rate("scalelab_http_requests_total", PROXIED),
    "errors": _rate("scalelab_http_requests_total", PROXIED + ',status=~"5.."'),
    "failed": _rate("scalelab_loadgen_requests_total", 'status=~"0|5.."'),
    "p50": _quantile(0.5),
    "p95": _quantile(0.95),
    "p99": _quantile(0.99),
    # Keys ending in "." take each series' backend label as their suffix.
    **{
        split_prefix(pool): _rate("scalelab_backend_requests_total", f'pool="{pool.label}"', by="backend")
        for _svc, pool in POOLS
    },
    # The request paths of the map: each holder's requests to each member, and the failed ones.
    **{edge_prefix(pool): _edges(f'pool="{pool.label}"') for _svc, pool in POOLS},
    **{edge_error_prefix(pool): _edges(f'pool="{pool.label}",status!~"[1-4].."') for _svc, pool in POOLS},
    **{
        f"{CALLS_PREFIX}{dependency}.": f"sum by (instance) (irate({_calls_selector(caller, calls)}[3s]))"
        for caller, dependency, calls in DEPENDENCY_CALLS
    },
    "cache.hit_ratio": (
        _rate("scalelab_gateway_cache_lookups_total", 'result="hit"')
        + " / "
        + _rate("scalelab_gateway_cache_lookups_total")
    ),
    "db.qps": _rate("scalelab_db_queries_total"),
    "worker.queue": "sum(scalelab_tasks_queue_depth)",
    # What each instance costs (keys end in "." and take its instance label): CPU % of one core, resident bytes.
    CPU_PREFIX: f'sum by (instance) (irate(process_cpu_seconds_total{{job="{LAB_JOB}"}}[3s])) * 100',
    MEMORY_PREFIX: f'sum by (instance) (process_resident_memory_bytes{{job="{LAB_JOB}"}})',
    CONTAINER_CPU_PREFIX: _per_container("sum", "irate(scalelab_container_cpu_seconds_total[3s])") + " * 100",
    CONTAINER_MEMORY_PREFIX: _per_container("max", "scalelab_container_memory_bytes"),
    CONTAINER_CPU_LIMIT_PREFIX: _per_container("max", "scalelab_container_cpu_limit_cores"),
    CONTAINER_MEMORY_LIMIT_PREFIX: _per_container("max", "scalelab_container_memory_limit_bytes"),
}


KEY_LABEL = "scalelab_key"
COMBINED_QUERY = " or ".join(f'label_replace({expr}, "{KEY_LABEL}", "{key}", "", "")' for key, expr in QUERIES.items())


class SourceUnavailable(RuntimeError):
    """The source could not be read at all; the message says why."""


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class PrometheusSource:
    """Instant queries of pre-aggregated expressions, one per series family."""

    name = "prometheus"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def read(self) -> dict[str, float]:
        """Return the current figures; raise SourceUnavailable when Prometheus does not answer.

        All series come from one query (each expression tagged with its key): one round trip and
        one evaluation per refresh instead of one per chart.
        """
        try:
            response = self._session.get(
                f"{self.url}/api/v1/query", params={"query": COMBINED_QUERY}, timeout=self.timeout
            )
            response.raise_for_status()
            result = response.json()["data"]["result"]
        except (requests.RequestException, KeyError, ValueError) as exc:
            raise SourceUnavailable(f"Prometheus at {self.url} did not answer: {exc}") from None
        values: dict[str, float] = {}
        for series in result:
            value = _finite(float(series["value"][1]))
            key = series["metric"].get(KEY_LABEL, "")
            if value is None or not key:
                continue
            suffix = series["metric"].get("backend") or series["metric"].get("instance", "")
            values[key + (suffix if key.endswith(".") else "")] = value
        return values


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _total(metrics: Metrics, name: str, **match: str) -> float:
    return sum(value for (metric, labels), value in metrics.items() if metric == name and _matches(labels, match))


def _has(metrics: Metrics, name: str) -> bool:
    return any(metric == name for metric, _labels in metrics)


def _matches(labels: tuple[tuple[str, str], ...], match: dict[str, str]) -> bool:
    have = dict(labels)
    for key, wanted in match.items():
        value = have.get(key)
        if value is None:
            return False
        if wanted.endswith("*") and not value.startswith(wanted[:-1]):
            return False
        if not wanted.endswith("*") and value != wanted:
            return False
    return True


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Return the ``q`` quantile of cumulative ``(upper bound, count)`` buckets, as Prometheus does."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bucket: its bound is the best answer
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0)
        lower, below = bound, count
    return lower


# What a failed request to a pool member is counted as: a 5xx, or how it failed without an answer.
FAILED_STATUSES = ("5*", "connect", "broken", "timeout")


class DirectSource:
    """The same figures from the services' own /metrics, as rates between two consecutive reads."""

    name = "services"

    def __init__(self, stack: StackClient, loadgen: Callable[[], InstanceInfo | None], clock=time.monotonic) -> None:
        self.stack = stack
        self.loadgen = loadgen
        self._clock = clock
        self._previous: tuple[float, dict[str, Metrics]] | None = None
        self._services = set(scraped_services())

    def _scrape(self, instances: list[InstanceInfo]) -> dict[str, Metrics]:
        wanted = [info for info in instances if info.state == "running" and info.service in self._services]
        loadgen = self.loadgen()
        if loadgen is not None:
            wanted.append(loadgen)
        futures = {info.name: self.stack._pool.submit(self.stack.metrics, info) for info in wanted}
        scraped = {}
        for name, future in futures.items():
            try:
                scraped[name] = future.result()
            except ServiceError:
                continue
        return scraped

    def read(self, instances: list[InstanceInfo]) -> dict[str, float]:
        """Return the current figures (rates need two reads: the first returns only gauges)."""
        now = self._clock()
        current = self._scrape(instances)
        previous, self._previous = self._previous, (now, current)
        entry = [name for name in current if service_of(name) == ENTRY]
        if not entry:
            raise SourceUnavailable(f"neither Prometheus nor the {ENTRY.replace('-', ' ')}'s /metrics answered")
        values: dict[str, float] = {}
        # Metric names are each service's own, so a gauge is found by name wherever it is exported.
        queues = [
            _total(m, "scalelab_tasks_queue_depth") for m in current.values() if _has(m, "scalelab_tasks_queue_depth")
        ]
        if queues:
            values["worker.queue"] = sum(queues)
        for instance, metrics in current.items():
            if _has(metrics, "process_resident_memory_bytes"):
                values[MEMORY_PREFIX + instance] = _total(metrics, "process_resident_memory_bytes")
        if previous is None:
            return values
        elapsed = max(now - previous[0], 1e-3)

        def rate(name: str, service: str | None = None, **match: str) -> float:
            total = 0.0
            for instance, metrics in current.items():
                if (service is not None and service_of(instance) != service) or instance not in previous[1]:
                    continue
                delta = _total(metrics, name, **match) - _total(previous[1][instance], name, **match)
                total += max(delta, 0.0)  # a restarted instance starts from zero: no negative rates
            return total / elapsed

        proxy = {"route": "proxy"}
        values["rps"] = rate("scalelab_http_requests_total", ENTRY, **proxy)
        values["errors"] = rate("scalelab_http_requests_total", ENTRY, status="5*", **proxy)
        values["failed"] = rate("scalelab_loadgen_requests_total", status="0") + rate(
            "scalelab_loadgen_requests_total", status="5*"
        )
        buckets: dict[float, float] = {}
        for instance in (name for name in entry if name in previous[1]):
            for (metric, labels), value in current[instance].items():
                if metric == "scalelab_http_request_duration_seconds_bucket" and dict(labels).get("route") == "proxy":
                    before = previous[1][instance].get((metric, labels), 0.0)
                    bound = float(dict(labels)["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + max(value - before, 0.0)
        for q in (50, 95, 99):
            quantile = histogram_quantile(q / 100, list(buckets.items()))
            if quantile is not None:
                values[f"p{q}"] = quantile
        paths = self._paths(current, previous[1], elapsed)
        values.update(paths)
        # What a pool sends each member is the sum of what each of its holders sends it.
        for _svc, pool in POOLS:
            prefix = edge_prefix(pool)
            for key, rate_of_path in paths.items():
                if key.startswith(prefix):
                    member = key[len(prefix) :].partition(EDGE_SEPARATOR)[2]
                    split = split_prefix(pool) + member
                    values[split] = values.get(split, 0.0) + rate_of_path
        lookups = rate("scalelab_gateway_cache_lookups_total")
        if lookups > 0:
            values["cache.hit_ratio"] = rate("scalelab_gateway_cache_lookups_total", result="hit") / lookups
        values["db.qps"] = rate("scalelab_db_queries_total")
        for instance, metrics in current.items():
            if instance in previous[1] and _has(metrics, "process_cpu_seconds_total"):
                spent = _total(metrics, "process_cpu_seconds_total") - _total(
                    previous[1][instance], "process_cpu_seconds_total"
                )
                values[CPU_PREFIX + instance] = max(spent, 0.0) / elapsed * 100
        return values

    @staticmethod
    def _paths(current: dict[str, Metrics], previous: dict[str, Metrics], elapsed: float) -> dict[str, float]:
        """Return the map's request paths: each holder's requests/s to each member, and to each dependency."""
        values: dict[str, float] = {}

        def rate(instance: str, name: str, **match: str) -> float:
            delta = _total(current[instance], name, **match) - _total(previous[instance], name, **match)
            return max(delta, 0.0) / elapsed

        for instance in (name for name in current if name in previous):
            for _svc, pool in POOLS:
                if service_of(instance) != pool.holder:
                    continue
                members = {
                    dict(labels)["backend"]
                    for (metric, labels) in current[instance]
                    if metric == "scalelab_backend_requests_total" and dict(labels).get("pool") == pool.label
                }
                for member in members:
                    path = instance + EDGE_SEPARATOR + member
                    match = {"pool": pool.label, "backend": member}
                    values[edge_prefix(pool) + path] = rate(instance, "scalelab_backend_requests_total", **match)
                    values[edge_error_prefix(pool) + path] = sum(
                        rate(instance, "scalelab_backend_requests_total", status=status, **match)
                        for status in FAILED_STATUSES
                    )
            for caller, dependency, calls in DEPENDENCY_CALLS:
                if service_of(instance) != caller or not _has(current[instance], calls.metric):
                    continue
                labels = list(calls.labels)
                values[f"{CALLS_PREFIX}{dependency}.{instance}"] = sum(
                    rate(instance, calls.metric, **dict(zip(labels, chosen, strict=True)))
                    for chosen in itertools.product(*calls.labels.values())
                )
        return values
