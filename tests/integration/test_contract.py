"""The classic lab's routes, field by field, through the load balancer and on each service."""

from __future__ import annotations

import uuid

import requests

from .conftest import REQUEST_TIMEOUT, Stack, wait_for

T = REQUEST_TIMEOUT


def test_token_is_issued_without_credentials(healthy_stack: Stack) -> None:
    response = requests.get(healthy_stack.lb + "/token", timeout=T)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token"} and body["token"].count(".") == 2


def test_data_defaults_to_my_data_and_is_cached_per_key(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    key = f"contract-{uuid.uuid4().hex}"
    first = requests.get(healthy_stack.lb + "/data", params={"key": key}, headers=headers, timeout=T)
    second = requests.get(healthy_stack.lb + "/data", params={"key": key}, headers=headers, timeout=T)
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is False
    assert second.json()["cached"] is True
    assert first.json()["data"] == second.json()["data"]
    assert first.json()["data"]["id"] == key
    assert isinstance(first.json()["gateway_id"], str) and first.json()["gateway_id"] in {"1", "2"}
    default = requests.get(healthy_stack.lb + "/data", headers=headers, timeout=T).json()
    assert default["data"]["id"] == "my_data" and isinstance(default["cached"], bool)


def test_token_is_accepted_raw_or_as_bearer_and_required(healthy_stack: Stack) -> None:
    token = healthy_stack.token()
    for header in (token, f"Bearer {token}"):
        assert requests.get(healthy_stack.lb + "/data", headers={"Authorization": header}, timeout=T).status_code == 200
    for headers in ({}, {"Authorization": "not-a-token"}, {"Authorization": token[:-4] + "AAAA"}):
        response = requests.get(healthy_stack.lb + "/data", headers=headers, timeout=T)
        assert response.status_code == 401
        assert "token" in response.json()["error"]


def test_process_is_balanced_over_three_microservices(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    seen = set()
    for _ in range(12):
        response = requests.get(healthy_stack.lb + "/process", headers=headers, timeout=T)
        assert response.status_code == 200
        body = response.json()
        assert body["message"] and isinstance(body["service_id"], str) and isinstance(body["gateway_id"], str)
        seen.add(body["service_id"])
    assert seen == {"1", "2", "3"}


def test_longtask_is_accepted_and_completes(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    response = requests.post(healthy_stack.lb + "/longtask", json={"duration": 0.2, "n": 7}, headers=headers, timeout=T)
    assert response.status_code == 202
    accepted = response.json()
    assert (
        accepted["status"] == "queued" and isinstance(accepted["task_id"], str) and accepted["gateway_id"] in {"1", "2"}
    )
    worker = healthy_stack.url("worker")

    def completed() -> dict | None:
        body = requests.get(f"{worker}/task/{accepted['task_id']}", timeout=T).json()
        assert body["status"] in {"queued", "processing", "completed"}
        return body if body["status"] == "completed" else None

    done = wait_for(completed)
    assert done["result"]["echo"] == {"duration": 0.2, "n": 7}
    via_gateway = requests.get(f"{healthy_stack.lb}/task/{accepted['task_id']}", headers=headers, timeout=T)
    assert via_gateway.status_code == 200 and via_gateway.json()["status"] == "completed"


def test_unknown_task_is_not_found(healthy_stack: Stack) -> None:
    response = requests.get(healthy_stack.url("worker") + "/task/no-such-task", timeout=T)
    assert response.status_code == 404 and response.json()["status"] == "not_found"
    through = requests.get(healthy_stack.lb + "/task/no-such-task", headers=healthy_stack.auth(), timeout=T)
    assert through.status_code == 404 and through.json()["status"] == "not_found"


def test_cache_service_routes(healthy_stack: Stack) -> None:
    cache = healthy_stack.url("cache")
    key = f"k-{uuid.uuid4().hex}"
    assert requests.get(f"{cache}/cache/{key}", timeout=T).status_code == 404
    assert requests.post(f"{cache}/cache/{key}", json={"value": {"a": 1}}, timeout=T).status_code == 201
    assert requests.get(f"{cache}/cache/{key}", timeout=T).json()["value"] == {"a": 1}
    assert requests.delete(f"{cache}/cache/{key}", timeout=T).json()["deleted"] is True
    stats = requests.get(f"{cache}/cache/stats", timeout=T).json()
    assert {"hits", "misses", "evictions", "expirations", "size"} <= set(stats)
    requests.post(f"{cache}/cache/{key}", json={"value": 1}, timeout=T)
    assert requests.post(f"{cache}/cache/flush", timeout=T).status_code == 200
    assert requests.get(f"{cache}/cache/stats", timeout=T).json()["size"] == 0


def test_database_routes(healthy_stack: Stack) -> None:
    db = healthy_stack.url("database")
    listing = requests.get(f"{db}/db", timeout=T).json()
    assert listing["count"] >= 1 and isinstance(listing["records"], list)
    record = requests.get(f"{db}/db/1", timeout=T).json()
    assert record["id"] == "1"


def test_every_instance_has_health_and_metrics(healthy_stack: Stack) -> None:
    for info in healthy_stack.services():
        health = requests.get(info.url + "/health", timeout=T)
        assert health.status_code == 200 and health.json()["instance"] == info.name
        metrics = requests.get(info.url + "/metrics", timeout=T)
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "scalelab_http_requests_total" in metrics.text


def test_any_key_works_and_cannot_reach_another_route(healthy_stack: Stack) -> None:
    headers = healthy_stack.auth()
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    requests.get(healthy_stack.lb + "/data", params={"key": sentinel}, headers=headers, timeout=T)
    for key in ("flush", "stats", "a/b/c", "with space", "ünïcødé ✓", "../cache/flush", "?x=1&y", "%2F"):
        for _ in range(2):
            response = requests.get(healthy_stack.lb + "/data", params={"key": key}, headers=headers, timeout=T)
            assert response.status_code == 200, (key, response.text)
            assert response.json()["data"]["id"] == key
    again = requests.get(healthy_stack.lb + "/data", params={"key": sentinel}, headers=headers, timeout=T).json()
    assert again["cached"] is True, "a key named like a cache route flushed the cache"
