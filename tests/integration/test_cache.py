"""Cache-aside in the gateway: coalescing, switches, and a cache outage that costs nothing."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from .conftest import REQUEST_TIMEOUT, Stack

T = REQUEST_TIMEOUT
CONCURRENT = 100


def _db_reads(stack: Stack) -> int:
    return requests.get(stack.url("database") + "/stats", timeout=T).json()["queries"].get("read", 0)


def test_hundred_concurrent_first_reads_make_one_database_query(healthy_stack: Stack) -> None:
    key = f"coalesce-{uuid.uuid4().hex}"
    gateway = healthy_stack.url("gateway-1")
    headers = healthy_stack.auth()
    before = _db_reads(healthy_stack)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(
            pool.map(
                lambda _: requests.get(gateway + "/data", params={"key": key}, headers=headers, timeout=T),
                range(CONCURRENT),
            )
        )
    assert all(r.status_code == 200 for r in responses)
    assert len({r.text.replace('"cached":true', '"cached":false') for r in responses}) == 1
    assert _db_reads(healthy_stack) - before == 1


def _first_reads_through_the_balancer(stack: Stack) -> tuple[list[requests.Response], int]:
    """Send CONCURRENT first requests for one new key through the balancer; return them and the database reads."""
    key = f"lease-{uuid.uuid4().hex}"
    headers = stack.auth()
    before = _db_reads(stack)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        responses = list(
            pool.map(
                lambda _: requests.get(stack.lb + "/data", params={"key": key}, headers=headers, timeout=T),
                range(CONCURRENT),
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:3]
    return responses, _db_reads(stack) - before


def _set_coalescing(stack: Stack, mode: object) -> None:
    for gateway in ("gateway-1", "gateway-2"):
        stack.control(gateway, coalescing=mode)


def test_coalescing_across_gateways_makes_one_database_query_through_the_balancer(healthy_stack: Stack) -> None:
    _set_coalescing(healthy_stack, "across_gateways")
    try:
        responses, reads = _first_reads_through_the_balancer(healthy_stack)
    finally:
        _set_coalescing(healthy_stack, "per_gateway")
    assert {r.json()["gateway_id"] for r in responses} == {"1", "2"}  # both gateways took part
    assert reads == 1
    waits = requests.get(healthy_stack.url("cache") + "/metrics", timeout=T).text
    assert 'scalelab_cache_leases_total{result="granted"}' in waits


def test_coalescing_per_gateway_makes_one_query_per_gateway_and_off_one_per_request(healthy_stack: Stack) -> None:
    # A slow read keeps the first one out while the other requests arrive, however slowly they are sent.
    knobs = requests.get(healthy_stack.url("database") + "/control", headers=healthy_stack.admin(), timeout=T)
    latency = knobs.json()["knobs"]["latency_ms"]["value"]
    healthy_stack.control("database", latency_ms=400)
    try:
        _, per_gateway = _first_reads_through_the_balancer(healthy_stack)
        _set_coalescing(healthy_stack, False)  # the switch it once was: false is off
        try:
            _, off = _first_reads_through_the_balancer(healthy_stack)
        finally:
            _set_coalescing(healthy_stack, True)
    finally:
        healthy_stack.control("database", latency_ms=latency)
    assert 1 <= per_gateway <= 2  # each gateway's single-flight reads once (two, unless one filled in time)
    assert off > 2 * per_gateway


def test_cache_switched_off_at_runtime(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    gateway = healthy_stack.url("gateway-1")
    key = f"off-{uuid.uuid4().hex}"
    requests.get(gateway + "/data", params={"key": key}, headers=headers, timeout=T)
    healthy_stack.control("gateway-1", cache_enabled=False)
    try:
        for _ in range(3):
            assert (
                requests.get(gateway + "/data", params={"key": key}, headers=headers, timeout=T).json()["cached"]
                is False
            )
        metrics = requests.get(gateway + "/metrics", timeout=T).text
        assert 'scalelab_knob_value{knob="cache_enabled"} 0.0' in metrics
    finally:
        healthy_stack.control("gateway-1", cache_enabled=True)
    assert requests.get(gateway + "/data", params={"key": key}, headers=headers, timeout=T).json()["cached"] is True


def test_cache_down_means_database_reads_not_errors(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    healthy_stack.orchestrator.kill("cache")
    for n in range(10):
        response = requests.get(healthy_stack.lb + "/data", params={"key": f"nocache-{n}"}, headers=headers, timeout=T)
        assert response.status_code == 200, response.text
        assert response.json()["cached"] is False
