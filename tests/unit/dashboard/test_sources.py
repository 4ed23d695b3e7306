"""Where the figures come from: Prometheus's combined query, or rates between two reads of the services' /metrics."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from dashboard.sources import (
    COMBINED_QUERY,
    CONTAINER_CPU_LIMIT_PREFIX,
    CONTAINER_CPU_PREFIX,
    CONTAINER_MEMORY_LIMIT_PREFIX,
    CONTAINER_MEMORY_PREFIX,
    KEY_LABEL,
    POOLS,
    QUERIES,
    DirectSource,
    PrometheusSource,
    SourceUnavailable,
    histogram_quantile,
    scraped_services,
    split_prefix,
)
from scalelab import catalog
from scalelab.orchestrators.base import InstanceInfo
from scalelab.stack import StackClient
from tests.unit.standins import CannedServer, closed_port, instance

from ..support import FakeClock

# ------------------------------------------------------------------ histogram_quantile

BUCKETS = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.25, 0.05),  # rank 25 of 50 in [0, 0.1]: halfway
        (0.5, 0.1),  # rank 50: the top of the first bucket
        (0.7, 0.3),  # rank 70: halfway through (0.1, 0.5] (20 of 40)
        (0.95, 0.75),  # rank 95: halfway through (0.5, 1.0] (5 of 10)
        (1.0, 1.0),
    ],
)
def test_histogram_quantile_interpolates_within_the_bucket(q, expected):
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_in_the_inf_bucket_is_the_last_finite_bound():
    buckets = [(0.1, 10.0), (0.25, 15.0), (math.inf, 20.0)]  # a quarter of the requests took longer than 0.25 s
    assert histogram_quantile(0.9, buckets) == 0.25
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)


def test_histogram_quantile_sorts_the_buckets_first():
    assert histogram_quantile(0.95, list(reversed(BUCKETS))) == pytest.approx(0.75)


def test_histogram_quantile_of_nothing_is_none():
    assert histogram_quantile(0.5, []) is None
    assert histogram_quantile(0.5, [(0.1, 0.0), (math.inf, 0.0)]) is None


# ------------------------------------------------------------------ the combined query


def test_combined_query_tags_every_expression_with_its_key():
    for key, expr in QUERIES.items():
        assert f'label_replace({expr}, "{KEY_LABEL}", "{key}", "", "")' in COMBINED_QUERY, key
    # Tagged once each (the container queries use label_replace themselves, to name the container's instance).
    assert COMBINED_QUERY.count(f'"{KEY_LABEL}"') == len(QUERIES)
    assert COMBINED_QUERY.count("(") == COMBINED_QUERY.count(")")


def test_queries_cover_every_series_the_charts_draw():
    assert set(QUERIES) == {
        "rps",
        "errors",
        "failed",
        "p50",
        "p95",
        "p99",
        "split.gateways.",
        "split.microservices.",
        "cache.hit_ratio",
        "db.qps",
        "worker.queue",
        "cpu.",
        "memory.",
        "container.cpu.",
        "container.memory.",
        "container.cpu_limit.",
        "container.memory_limit.",
        "edge.gateways.",
        "edge.microservices.",
        "edge_errors.gateways.",
        "edge_errors.microservices.",
        "calls.cache.",
        "calls.database.",
        "calls.worker.",
    }


def test_the_container_queries_give_each_containers_figures_under_its_own_instance(tmp_path: Path):
    # Prometheus's own evaluator (promtool) runs the page's queries over series as the page exports them:
    # under container_instance, beside the page's own target labels (instance="dashboard").
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: apt-get install prometheus (it ships promtool)")
    page = 'job="scalelab", instance="dashboard", service="dashboard"'
    gateway = f'{page}, container_instance="gateway-1", container_service="gateway"'
    loadgen = f'{page}, container_instance="loadgen", container_service="loadgen"'
    series = {
        f"scalelab_container_cpu_seconds_total{{{gateway}}}": "0+0.25x30",  # a quarter of a core
        f"scalelab_container_cpu_limit_cores{{{gateway}}}": "0.5x30",
        f"scalelab_container_memory_bytes{{{gateway}}}": "100663296x30",
        f"scalelab_container_memory_limit_bytes{{{gateway}}}": "402653184x30",
        f"scalelab_container_cpu_seconds_total{{{loadgen}}}": "0+0.125x30",  # no limits of its own
        f"scalelab_container_memory_bytes{{{loadgen}}}": "52428800x30",
    }
    expected = {
        CONTAINER_CPU_PREFIX: {"gateway-1": 25, "loadgen": 12.5},  # % of one core
        CONTAINER_MEMORY_PREFIX: {"gateway-1": 100663296, "loadgen": 52428800},
        CONTAINER_CPU_LIMIT_PREFIX: {"gateway-1": 0.5},
        CONTAINER_MEMORY_LIMIT_PREFIX: {"gateway-1": 402653184},
    }
    test = {
        "rule_files": [],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": name, "values": values} for name, values in series.items()],
                "promql_expr_test": [
                    {
                        "expr": QUERIES[key],
                        "eval_time": "20s",
                        "exp_samples": [
                            {"labels": f'{{instance="{name}"}}', "value": value} for name, value in by_name.items()
                        ],
                    }
                    for key, by_name in expected.items()
                ],
            }
        ],
    }
    path = tmp_path / "page_queries_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_pool_of_the_catalog_has_its_split_in_the_order_a_request_travels():
    assert [(svc.name, pool.holder) for svc, pool in POOLS] == [
        (svc.name, pool.holder) for svc, pool in reversed(list(catalog.pool_holders()))
    ]
    assert POOLS[0][1].holder == catalog.entry().name
    for _svc, pool in POOLS:
        assert f'pool="{pool.label}"' in QUERIES[split_prefix(pool)]


def test_traffic_errors_and_latency_are_read_at_the_entry():
    for key in ("rps", "errors", "p50", "p95", "p99"):
        assert f'service="{catalog.entry().name}",route="proxy"' in QUERIES[key], key


def test_the_direct_source_reads_every_lab_service_but_the_pools_leaves():
    scraped = scraped_services()
    holders = {pool.holder for _svc, pool in catalog.pool_holders()}
    assert catalog.entry().name in scraped and holders <= set(scraped)
    for svc in catalog.lab_services():
        leaf = svc.pool is not None and svc.name not in holders
        assert (svc.name in scraped) is not leaf, svc.name
    assert "microservice" not in scraped


# ------------------------------------------------------------------ PrometheusSource


def vector(*series: tuple[dict[str, str], str]) -> dict:
    """Return a Prometheus instant-query answer holding ``(labels, value)`` series."""
    result = [{"metric": labels, "value": [1_700_000_000.123, value]} for labels, value in series]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_prometheus_read_maps_each_series_to_its_key(server: CannedServer):
    server.json(
        "GET",
        "/api/v1/query",
        vector(
            ({KEY_LABEL: "rps"}, "125.5"),
            ({KEY_LABEL: "p99"}, "0.042"),
            ({KEY_LABEL: "split.gateways.", "backend": "gateway-1"}, "60"),
            ({KEY_LABEL: "split.gateways.", "backend": "gateway-2"}, "65.5"),
            ({KEY_LABEL: "split.microservices.", "backend": "microservice-3"}, "7"),
            ({KEY_LABEL: "cache.hit_ratio"}, "NaN"),  # no lookups yet: 0/0
            ({KEY_LABEL: "p50"}, "+Inf"),
            ({"backend": "gateway-1"}, "3"),  # not one of ours
        ),
    )
    values = PrometheusSource(server.url + "/", timeout=1.0).read()
    assert values == {
        "rps": 125.5,
        "p99": 0.042,
        "split.gateways.gateway-1": 60.0,
        "split.gateways.gateway-2": 65.5,
        "split.microservices.microservice-3": 7.0,
    }
    assert server.paths() == ["/api/v1/query"]
    assert server.seen[0].query["query"] == [COMBINED_QUERY]  # one round trip for every chart


def test_prometheus_read_of_an_empty_result_is_empty(server: CannedServer):
    server.json("GET", "/api/v1/query", vector())
    assert PrometheusSource(server.url, timeout=1.0).read() == {}


@pytest.mark.parametrize(
    "reply",
    [
        (500, {"status": "error", "error": "query timed out"}),
        (200, {"status": "success"}),  # no data
    ],
)
def test_prometheus_read_raises_source_unavailable_on_a_bad_answer(server: CannedServer, reply):
    status, payload = reply
    server.json("GET", "/api/v1/query", payload, status=status)
    with pytest.raises(SourceUnavailable, match=f"Prometheus at {server.url} did not answer"):
        PrometheusSource(server.url, timeout=1.0).read()


def test_prometheus_read_raises_source_unavailable_on_a_non_json_answer(server: CannedServer):
    server.text("GET", "/api/v1/query", "<html>a proxy's error page</html>")
    with pytest.raises(SourceUnavailable):
        PrometheusSource(server.url, timeout=1.0).read()


def test_prometheus_read_raises_source_unavailable_when_nothing_listens():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(SourceUnavailable, match=f"Prometheus at {url} did not answer"):
        PrometheusSource(url, timeout=1.0).read()


# ------------------------------------------------------------------ DirectSource


def balancer_metrics(proxy_ok: int, proxy_5xx: int, other: int, buckets: dict[str, int], split: dict[str, int]) -> str:
    """Return the load balancer's /metrics text with the given counters."""
    lines = [
        "# HELP scalelab_http_requests_total HTTP requests served, by route, method and status.",
        "# TYPE scalelab_http_requests_total counter",
        f'scalelab_http_requests_total{{route="proxy",method="GET",status="200"}} {proxy_ok}',
        f'scalelab_http_requests_total{{route="proxy",method="GET",status="503"}} {proxy_5xx}',
        f'scalelab_http_requests_total{{route="lb_status",method="GET",status="200"}} {other}',
        "# HELP scalelab_http_request_duration_seconds Time to serve an HTTP request, by route.",
        "# TYPE scalelab_http_request_duration_seconds histogram",
    ]
    for le, count in buckets.items():
        lines.append(f'scalelab_http_request_duration_seconds_bucket{{route="proxy",le="{le}"}} {count}')
    lines.append(f'scalelab_http_request_duration_seconds_count{{route="proxy"}} {buckets["+Inf"]}')
    lines.append('scalelab_http_request_duration_seconds_sum{route="proxy"} 1.0')
    lines += [
        "# HELP scalelab_backend_requests_total Requests sent to the backend, by status.",
        "# TYPE scalelab_backend_requests_total counter",
    ]
    for backend, count in split.items():
        lines.append(f'scalelab_backend_requests_total{{pool="gateways",backend="{backend}",status="200"}} {count}')
    return "\n".join(lines) + "\n"


def gateway_metrics(hits: int, misses: int, split: dict[str, int]) -> str:
    """Return a gateway's /metrics text with cache lookups and its microservice pool's counters."""
    lines = [
        "# HELP scalelab_gateway_cache_lookups_total Cache-aside lookups, by result.",
        "# TYPE scalelab_gateway_cache_lookups_total counter",
        f'scalelab_gateway_cache_lookups_total{{result="hit"}} {hits}',
        f'scalelab_gateway_cache_lookups_total{{result="miss"}} {misses}',
        "# HELP scalelab_backend_requests_total Requests sent to the backend, by status.",
        "# TYPE scalelab_backend_requests_total counter",
    ]
    for backend, count in split.items():
        lines.append(
            f'scalelab_backend_requests_total{{pool="microservices",backend="{backend}",status="200"}} {count}'
        )
    return "\n".join(lines) + "\n"


def counter(name: str, help_: str, samples: dict[str, float]) -> str:
    """Return a counter family's text with ``{labels: value}`` samples."""
    lines = [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
    lines += [f"{name}_total{{{labels}}} {value}" for labels, value in samples.items()]
    return "\n".join(lines) + "\n"


class Stack:
    """One canned server per instance the direct source scrapes, and the instances pointing at them."""

    def __init__(self, serve: Callable[[], CannedServer]) -> None:
        self.servers = {name: serve() for name in ("load-balancer", "gateway-1", "gateway-2", "database", "worker")}
        self.servers["loadgen"] = serve()
        services = {"gateway-1": "gateway", "gateway-2": "gateway"}
        self.instances = [
            instance(name, services.get(name, name), server.port)
            for name, server in self.servers.items()
            if name != "loadgen"
        ]
        self.loadgen = instance("loadgen", "loadgen", self.servers["loadgen"].port)

    def publish(self, step: int) -> None:
        """Serve the counters as they stand after ``step`` (0 or 1) intervals."""
        n = step
        self.servers["load-balancer"].text(
            "GET",
            "/metrics",
            balancer_metrics(
                proxy_ok=1000 + 200 * n,
                proxy_5xx=10 + 20 * n,
                other=5 + 500 * n,  # not proxied requests: not counted as traffic
                buckets={"0.01": 500 + 110 * n, "0.1": 900 + 200 * n, "1.0": 1010 + 220 * n, "+Inf": 1010 + 220 * n},
                split={"gateway-1": 600 + 100 * n, "gateway-2": 400 + 120 * n},
            ),
        )
        for name, (hits, misses) in {"gateway-1": (300, 100), "gateway-2": (200, 100)}.items():
            split = {"microservice-1": 10 + 8 * n, "microservice-2": 20 + 4 * n}
            self.servers[name].text("GET", "/metrics", gateway_metrics(hits + 60 * n, misses + 20 * n, split))
        self.servers["database"].text(
            "GET",
            "/metrics",
            counter("scalelab_db_queries", "Database queries.", {'operation="get"': 50 + 30 * n, 'operation="set"': 5}),
        )
        self.servers["worker"].text(
            "GET",
            "/metrics",
            "# HELP scalelab_tasks_queue_depth Tasks waiting.\n# TYPE scalelab_tasks_queue_depth gauge\n"
            f"scalelab_tasks_queue_depth {3 + 4 * n}\n"
            # What the instance costs, as prometheus-client's process collector exports it.
            f"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {1.5 + 0.4 * n}\n"
            f"# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {50 * 2**20 + n * 2**20}\n",
        )
        self.servers["loadgen"].text(
            "GET",
            "/metrics",
            counter(
                "scalelab_loadgen_requests",
                "Requests the load generator sent.",
                {
                    'endpoint="data",status="200",served_by="gateway-1"': 900 + 180 * n,
                    'endpoint="data",status="0",served_by=""': 2 + 6 * n,
                    'endpoint="data",status="502",served_by=""': 1 + 2 * n,
                    'endpoint="data",status="404",served_by="gateway-2"': 7 + 100 * n,  # not a failure
                },
            ),
        )


@pytest.fixture
def stack(serve: Callable[[], CannedServer]) -> Stack:
    """Canned instances of a running stack."""
    return Stack(serve)


def test_direct_first_read_has_only_gauges(stack: Stack, client: StackClient, clock: FakeClock):
    stack.publish(0)
    source = DirectSource(client, lambda: stack.loadgen, clock=clock)
    assert source.read(stack.instances) == {"worker.queue": 3.0, "memory.worker": 50 * 2**20}


def test_direct_second_read_gives_rates_over_the_elapsed_time(stack: Stack, client: StackClient, clock: FakeClock):
    source = DirectSource(client, lambda: stack.loadgen, clock=clock)
    stack.publish(0)
    source.read(stack.instances)
    stack.publish(1)
    clock.advance(2.0)
    values = source.read(stack.instances)
    paths = {key: value for key, value in values.items() if key.startswith(("edge", "calls."))}
    values = {key: value for key, value in values.items() if key not in paths}
    # The traffic map's paths: each holder to each member (as the splits, per holder), each gateway to the cache.
    assert paths == pytest.approx(
        {
            "edge.gateways.load-balancer>gateway-1": 100 / 2,
            "edge.gateways.load-balancer>gateway-2": 120 / 2,
            **{f"edge.microservices.gateway-{n}>microservice-1": 8 / 2 for n in (1, 2)},
            **{f"edge.microservices.gateway-{n}>microservice-2": 4 / 2 for n in (1, 2)},
            **{key: 0.0 for key in paths if key.startswith("edge_errors.")},
            **{f"calls.cache.gateway-{n}": 160 / 2 / 2 for n in (1, 2)},  # hits, misses and errors, not bypasses
        }
    )
    assert values == pytest.approx(
        {
            "rps": (200 + 20) / 2,  # proxied requests only, every status
            "errors": 20 / 2,
            "failed": (6 + 2) / 2,  # connection failures (status 0) and 5xx the clients saw
            "p50": 0.01 * 110 / 110,  # rank 110 of 220 new requests: the top of the first bucket
            "p95": 0.1 + 0.9 * (209 - 200) / 20,  # rank 209 in (0.1, 1.0], which holds 20
            "p99": 0.1 + 0.9 * (217.8 - 200) / 20,
            "split.gateways.gateway-1": 100 / 2,
            "split.gateways.gateway-2": 120 / 2,
            "split.microservices.microservice-1": 2 * 8 / 2,  # summed over both gateways
            "split.microservices.microservice-2": 2 * 4 / 2,
            "cache.hit_ratio": 120 / 160,
            "db.qps": 30 / 2,
            "worker.queue": 7.0,
            "cpu.worker": 0.4 / 2 * 100,  # percent of one core
            "memory.worker": 51 * 2**20,
        }
    )


def test_direct_rates_never_go_negative_after_a_restart(stack: Stack, client: StackClient, clock: FakeClock):
    source = DirectSource(client, lambda: stack.loadgen, clock=clock)
    stack.publish(1)
    source.read(stack.instances)
    stack.publish(0)  # every counter back to a lower value, as after a restart
    clock.advance(1.0)
    values = source.read(stack.instances)
    rates = {key: value for key, value in values.items() if key not in ("worker.queue",)}
    assert rates["rps"] == 0.0
    assert min(rates.values()) == 0.0
    assert "p50" not in values  # no new requests: no latency to show


def test_direct_read_skips_instances_that_do_not_answer(stack: Stack, client: StackClient, clock: FakeClock):
    stack.servers["database"].stop()
    stack.publish(0)
    source = DirectSource(client, lambda: None, clock=clock)  # no load generator running
    source.read(stack.instances)
    stack.publish(1)
    clock.advance(1.0)
    values = source.read(stack.instances)
    assert values["db.qps"] == 0.0
    assert values["failed"] == 0.0
    assert values["rps"] == 220.0


def test_direct_read_ignores_stopped_instances(stack: Stack, client: StackClient, clock: FakeClock):
    stack.publish(0)
    stopped = [InstanceInfo(i.name, i.service, i.port, "stopped") if i.name == "worker" else i for i in stack.instances]
    assert DirectSource(client, lambda: None, clock=clock).read(stopped) == {}
    assert "/metrics" not in stack.servers["worker"].paths()


def test_direct_read_raises_source_unavailable_without_the_load_balancer(
    stack: Stack, client: StackClient, clock: FakeClock
):
    stack.publish(0)
    down = [instance("load-balancer", "load-balancer", closed_port()), *stack.instances[1:]]
    with pytest.raises(SourceUnavailable, match="load balancer"):
        DirectSource(client, lambda: None, clock=clock).read(down)
