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
