"""The stack as the page sees it: each instance's tile from its process state, its balancers' view or a probe."""

from __future__ import annotations

from typing import Any

import pytest

from scalelab.stack import ServiceError, StackClient, Tile
from services.kit.auth import ADMIN_HEADER
from tests.unit.standins import CannedServer, closed_port, instance


def backend(name: str, healthy: bool, in_flight: int = 0, served: int = 0) -> dict[str, Any]:
    """Return one backend as a balancer's pool status lists it."""
    return {"name": name, "healthy": healthy, "in_flight": in_flight, "requests_served": served, "weight": 1}


def test_an_instance_healthy_in_every_pool_is_healthy_and_in_rotation(client: StackClient):
    pools = {
        "gateway-1": {"backends": [backend("microservice-1", True, in_flight=2, served=100)]},
        "gateway-2": {"backends": [backend("microservice-1", True, in_flight=1, served=50)]},
    }
    [tile] = client.tiles([instance("microservice-1", "microservice", 5001)], pools)
    assert tile == Tile(
        "microservice-1", "microservice", "http://127.0.0.1:5001", "healthy", "running", 3, 150, "in rotation"
    )


def test_an_instance_healthy_in_some_pools_says_in_how_many(client: StackClient):
    pools = {
        "gateway-1": {"backends": [backend("microservice-2", True)]},
        "gateway-2": {"backends": [backend("microservice-2", False)]},
    }
    [tile] = client.tiles([instance("microservice-2", "microservice", 5006)], pools)
    assert tile.state == "healthy"
    assert tile.detail == "in rotation in 1 of 2 pools"


def test_a_tripped_circuit_breaker_shows_on_the_tile_with_how_many_pools_skip_the_instance(client: StackClient):
    pools = {
        "gateway-1": {"backends": [{**backend("microservice-2", True), "breaker": "open"}]},
        "gateway-2": {"backends": [{**backend("microservice-2", True), "breaker": "closed"}]},
    }
    [tile] = client.tiles([instance("microservice-2", "microservice", 5006)], pools)
    assert tile.detail == "in rotation · breaker open in 1"


def test_a_running_instance_no_pool_counts_healthy_yet_is_starting(client: StackClient):
    pools = {"load-balancer": {"backends": [backend("gateway-2", False, served=7)]}}
    [tile] = client.tiles([instance("gateway-2", "gateway", closed_port())], pools)
    assert (tile.state, tile.process, tile.detail) == ("starting", "running", "out of rotation")
    assert tile.served == 7


def test_a_stopped_instance_is_down_whatever_its_balancers_last_saw(client: StackClient):
    pools = {"load-balancer": {"backends": [backend("gateway-2", True)]}}
    [tile] = client.tiles([instance("gateway-2", "gateway", closed_port(), state="stopped")], pools)
    assert (tile.state, tile.process) == ("down", "stopped")


def test_a_paused_instance_is_paused(client: StackClient):
    pools = {"load-balancer": {"backends": [backend("gateway-1", True)]}}
    [tile] = client.tiles([instance("gateway-1", "gateway", 5000, state="paused")], pools)
    assert (tile.state, tile.process) == ("paused", "paused")


@pytest.mark.parametrize(("health", "state"), [("healthy", "healthy"), ("starting", "starting"), ("unhealthy", "down")])
def test_an_unbalanced_instance_uses_the_orchestrators_health(
    client: StackClient, server: CannedServer, health: str, state: str
):
    [tile] = client.tiles([instance("cache", "cache", server.port, health=health)], {})
    assert tile.state == state
    assert (tile.in_flight, tile.served, tile.detail) == (None, None, "")
    assert server.seen == []  # the orchestrator already knew: no probe


def test_an_unbalanced_instance_is_probed_on_its_health_route(client: StackClient, server: CannedServer):
    server.json("GET", "/health", {"status": "ok"})
    [tile] = client.tiles([instance("database", "database", server.port)], {})
    assert tile.state == "healthy"
    assert server.paths() == ["/health"]


def test_an_unbalanced_instance_answering_an_error_is_down(client: StackClient, server: CannedServer):
    server.json("GET", "/health", {"status": "degraded"}, status=503)
    [tile] = client.tiles([instance("database", "database", server.port)], {})
    assert tile.state == "down"


def test_an_unbalanced_instance_that_does_not_answer_is_down(client: StackClient):
    [tile] = client.tiles([instance("worker", "worker", closed_port())], {})
    assert (tile.state, tile.process) == ("down", "running")


def test_stopped_and_paused_unbalanced_instances_are_not_probed(client: StackClient, server: CannedServer):
    server.json("GET", "/health", {"status": "ok"})
    tiles = client.tiles(
        [instance("cache", "cache", server.port, state="stopped"), instance("worker", "worker", server.port, "paused")],
        {},
    )
    assert [(tile.name, tile.state) for tile in tiles] == [("cache", "down"), ("worker", "paused")]
    assert server.seen == []


def test_tiles_keep_the_orchestrators_order(client: StackClient):
    instances = [
        instance("load-balancer", "load-balancer", 8000, health="healthy"),
        instance("gateway-1", "gateway", closed_port()),
        instance("gateway-2", "gateway", closed_port(), state="stopped"),
    ]
    pools = {"load-balancer": {"backends": [backend("gateway-1", True), backend("gateway-2", False)]}}
    tiles = client.tiles(instances, pools)
    assert [(tile.name, tile.state) for tile in tiles] == [
        ("load-balancer", "healthy"),
        ("gateway-1", "healthy"),
        ("gateway-2", "down"),
    ]


# ------------------------------------------------------------------ reading the pools


def test_pools_reads_each_running_balancers_status_with_the_admin_token(client: StackClient, serve):
    balancer, gateway = serve(), serve()
    balancer.json("GET", "/lb/status", {"backends": [backend("gateway-1", True)]})
    gateway.json("GET", "/pool/status", {"backends": [backend("microservice-1", True)]})
    instances = [
        instance("load-balancer", "load-balancer", balancer.port),
        instance("gateway-1", "gateway", gateway.port),
        instance("gateway-2", "gateway", closed_port()),  # does not answer: left out
        instance("gateway-3", "gateway", gateway.port, state="paused"),  # not asked
        instance("microservice-1", "microservice", gateway.port),  # balances nothing
    ]
    pools = client.pools(instances)
    assert pools == {
        "load-balancer": {"backends": [backend("gateway-1", True)]},
        "gateway-1": {"backends": [backend("microservice-1", True)]},
    }
    assert balancer.paths() == ["/lb/status"]
    assert gateway.paths() == ["/pool/status"]
    assert balancer.seen[0].headers[ADMIN_HEADER] == "t"


def test_call_raises_service_error_with_the_services_message(client: StackClient, server: CannedServer):
    server.json("PUT", "/control", {"error": "unknown knob 'x'"}, status=400)
    with pytest.raises(ServiceError, match=r"cache refused PUT /control \(400\): unknown knob 'x'"):
        client.call(instance("cache", "cache", server.port), "PUT", "/control", {"x": 1})


def test_call_raises_service_error_naming_the_address_when_nothing_listens(client: StackClient):
    info = instance("cache", "cache", closed_port())
    with pytest.raises(ServiceError, match=f"cache at {info.url} did not answer GET /control"):
        client.call(info, "GET", "/control")


def test_metrics_returns_samples_by_name_and_sorted_labels(client: StackClient, server: CannedServer):
    server.text(
        "GET",
        "/metrics",
        "# TYPE scalelab_db_queries_total counter\n"
        'scalelab_db_queries_total{operation="get",b="2"} 5\n'
        "# TYPE scalelab_tasks_queue_depth gauge\nscalelab_tasks_queue_depth 3\n",
    )
    samples = client.metrics(instance("database", "database", server.port))
    assert samples == {
        ("scalelab_db_queries_total", (("b", "2"), ("operation", "get"))): 5.0,
        ("scalelab_tasks_queue_depth", ()): 3.0,
    }


@pytest.mark.parametrize(
    ("admission", "detail"),
    [
        (
            {"mode": "adaptive", "limit": 7, "in_flight": 7, "shed": 120, "client_rate_limit": 5.0},
            "in rotation · shedding adaptive (limit 7), 5 req/s per client, 120 shed",
        ),
        ({"mode": "off", "limit": 0, "in_flight": 0, "shed": 0, "client_rate_limit": 0.0}, "in rotation"),
    ],
)
def test_a_gateway_that_sheds_load_says_how_on_its_tile(
    client: StackClient, server: CannedServer, admission: dict[str, Any], detail: str
):
    server.json("GET", "/health", {"status": "ok", "admission": admission})
    pools = {"load-balancer": {"backends": [backend("gateway-2", True)]}}
    [tile] = client.tiles([instance("gateway-2", "gateway", server.port)], pools)
    assert tile.detail == detail


def test_a_breaker_the_gateways_opened_on_a_dependency_shows_on_its_tile(client: StackClient):
    gateways = [CannedServer(), CannedServer()]
    try:
        gateways[0].json("GET", "/health", {"status": "ok", "database_breaker": "open", "cache_breaker": "closed"})
        gateways[1].json("GET", "/health", {"status": "ok", "database_breaker": "closed", "cache_breaker": "closed"})
        instances = [
            instance("gateway-1", "gateway", gateways[0].port),
            instance("gateway-2", "gateway", gateways[1].port),
            instance("database", "database", closed_port(), health="healthy"),
            instance("cache", "cache", closed_port(), health="healthy"),
        ]
        tiles = {tile.name: tile for tile in client.tiles(instances, {})}
        assert tiles["database"].detail == "breaker open in 1 of 2 gateways"
        assert tiles["cache"].detail == ""
    finally:
        for gateway in gateways:
            gateway.stop()
