"""Failover: killing or pausing an instance under load costs the client no failed request."""

from __future__ import annotations

import time

import pytest
import requests

from services.kit import HealthPolicy

from .conftest import REQUEST_TIMEOUT, Stack, wait_for
from .load import run_load

T = REQUEST_TIMEOUT
CLIENTS = 8
SECONDS = 4.5


def _backend(stack: Stack, status_url: str, name: str) -> dict:
    backends = requests.get(status_url, timeout=T).json()["backends"]
    return next(b for b in backends if b["name"] == name)


def test_killing_a_gateway_under_load_fails_no_request(healthy_stack: Stack) -> None:
    result = run_load(
        healthy_stack.lb + "/data", healthy_stack.auth(), CLIENTS, SECONDS,
        lambda: healthy_stack.orchestrator.kill("gateway-2"), "gateway_id",
    )  # fmt: skip
    assert result.total > 100
    assert result.failed == 0, result.errors[:5]
    assert result.served_by["1"] > result.served_by["2"] > 0
    assert _backend(healthy_stack, healthy_stack.lb + "/lb/status", "gateway-2")["healthy"] is False


def test_killing_a_microservice_under_load_fails_no_request(healthy_stack: Stack) -> None:
    result = run_load(
        healthy_stack.lb + "/process", healthy_stack.auth(), CLIENTS, SECONDS,
        lambda: healthy_stack.orchestrator.kill("microservice-2"), "service_id",
    )  # fmt: skip
    assert result.total > 100
    assert result.failed == 0, result.errors[:5]
    assert set(result.served_by) == {"1", "2", "3"}
    for gateway in ("gateway-1", "gateway-2"):
        status_url = healthy_stack.url(gateway) + "/pool/status"
        assert _backend(healthy_stack, status_url, "microservice-2")["healthy"] is False


def test_paused_gateway_is_marked_down_within_the_health_check_bound(healthy_stack: Stack) -> None:
    bound = HealthPolicy().detection_bound()
    status_url = healthy_stack.lb + "/lb/status"
    healthy_stack.orchestrator.pause("gateway-1")
    paused_at = time.monotonic()
    wait_for(
        lambda: not _backend(healthy_stack, status_url, "gateway-1")["healthy"], timeout=bound + 1.0, interval=0.02
    )
    detected = time.monotonic() - paused_at
    # Two probe intervals of slack: the first probe may have started just before the pause.
    assert detected <= bound + HealthPolicy().interval * 2, detected
    headers = healthy_stack.auth()
    for _ in range(10):
        response = requests.get(healthy_stack.lb + "/data", headers=headers, timeout=T)
        assert response.status_code == 200 and response.json()["gateway_id"] == "2"
    healthy_stack.orchestrator.resume("gateway-1")
    wait_for(lambda: _backend(healthy_stack, status_url, "gateway-1")["healthy"])


@pytest.mark.parametrize(
    ("route", "instance", "field"),
    [("/data", "gateway-2", "gateway_id"), ("/process", "microservice-2", "service_id")],
    ids=["gateway", "microservice"],
)
def test_pausing_an_instance_under_load_fails_no_request_and_stalls_none_for_long(
    healthy_stack: Stack, route: str, instance: str, field: str
) -> None:
    result = run_load(
        healthy_stack.lb + route, healthy_stack.auth(), CLIENTS, SECONDS,
        lambda: healthy_stack.orchestrator.pause(instance), field,
    )  # fmt: skip
    assert result.total > 100
    assert result.failed == 0, result.errors[:5]
    # Requests caught on the hung instance move on once it is marked down, not after the 10 s timeout.
    bound = HealthPolicy().detection_bound() + 1.5
    assert result.slowest < bound, f"a request took {result.slowest:.2f} s (bound {bound:.2f} s)"


def test_no_healthy_gateway_gives_a_clear_503(healthy_stack: Stack) -> None:
    healthy_stack.orchestrator.kill("gateway-1")
    healthy_stack.orchestrator.kill("gateway-2")
    response = requests.get(healthy_stack.lb + "/data", timeout=T)
    assert response.status_code == 503
    body = response.json()
    assert "no healthy backend" in body["error"] and "gateway-1" in body["error"]


def test_restarted_gateway_rejoins(healthy_stack: Stack) -> None:
    healthy_stack.orchestrator.kill("gateway-2")
    status_url = healthy_stack.lb + "/lb/status"
    wait_for(lambda: not _backend(healthy_stack, status_url, "gateway-2")["healthy"])
    healthy_stack.orchestrator.start("gateway-2")
    wait_for(lambda: _backend(healthy_stack, status_url, "gateway-2")["healthy"])
    headers = healthy_stack.auth()
    ids = {requests.get(healthy_stack.lb + "/data", headers=headers, timeout=T).json()["gateway_id"] for _ in range(6)}
    assert ids == {"1", "2"}
