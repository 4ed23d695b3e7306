"""Balancing: round robin spreads evenly; algorithms and weights change at runtime."""

from __future__ import annotations

from collections import Counter

import requests

from .conftest import REQUEST_TIMEOUT, Stack

T = REQUEST_TIMEOUT


def _split(stack: Stack, n: int) -> Counter:
    headers = stack.auth()
    with requests.Session() as session:
        return Counter(
            session.get(stack.lb + "/data", headers=headers, timeout=T).json()["gateway_id"] for _ in range(n)
        )


def test_round_robin_spreads_data_evenly_over_gateways(healthy_stack: Stack) -> None:
    split = _split(healthy_stack, 200)
    assert set(split) == {"1", "2"}
    assert abs(split["1"] - split["2"]) <= 2, split


def test_weighted_round_robin_switched_at_runtime(healthy_stack: Stack) -> None:
    healthy_stack.control("load-balancer", algorithm="weighted_round_robin", **{"weight.gateway-1": 3})
    try:
        status = requests.get(healthy_stack.lb + "/lb/status", timeout=T).json()
        assert status["algorithm"] == "weighted_round_robin"
        split = _split(healthy_stack, 200)
        assert split["1"] == 150 and split["2"] == 50, split
    finally:
        healthy_stack.control("load-balancer", algorithm="round_robin", **{"weight.gateway-1": 1})


def test_every_algorithm_serves(healthy_stack: Stack) -> None:
    try:
        for algorithm in ("least_connections", "power_of_two", "weighted_round_robin", "round_robin"):
            healthy_stack.control("load-balancer", algorithm=algorithm)
            healthy_stack.control("gateway-1", algorithm=algorithm)
            assert set(_split(healthy_stack, 40)) <= {"1", "2"}
    finally:
        healthy_stack.control("load-balancer", algorithm="round_robin")
        healthy_stack.control("gateway-1", algorithm="round_robin")


def test_status_route_shows_each_backend(healthy_stack: Stack) -> None:
    _split(healthy_stack, 4)
    status = requests.get(healthy_stack.lb + "/lb/status", timeout=T).json()
    names = [backend["name"] for backend in status["backends"]]
    assert names == ["gateway-1", "gateway-2"]
    for backend in status["backends"]:
        assert backend["state"] == "healthy" and backend["healthy"] is True
        assert backend["requests_served"] >= 1
        assert isinstance(backend["in_flight"], int)
        assert backend["last_check_latency_ms"] is not None
        assert backend["last_change"] > 0
    pool = requests.get(healthy_stack.url("gateway-1") + "/pool/status", timeout=T).json()
    assert [b["name"] for b in pool["backends"]] == ["microservice-1", "microservice-2", "microservice-3"]


def test_control_needs_the_admin_token(healthy_stack: Stack) -> None:
    for headers in ({}, {"X-Admin-Token": "wrong"}):
        response = requests.put(
            healthy_stack.lb + "/control", json={"algorithm": "power_of_two"}, headers=headers, timeout=T
        )
        assert response.status_code == 401 and "admin token" in response.json()["error"]
        gateway = requests.put(
            healthy_stack.url("gateway-1") + "/control", json={"cache_enabled": False}, headers=headers, timeout=T
        )
        assert gateway.status_code == 401
    assert requests.get(healthy_stack.lb + "/lb/status", timeout=T).json()["algorithm"] == "round_robin"
    knobs = requests.get(healthy_stack.url("gateway-1") + "/control", headers=healthy_stack.admin(), timeout=T).json()
    assert knobs["knobs"]["cache_enabled"]["value"] is True
