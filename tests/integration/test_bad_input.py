"""Bad input gets a 4xx JSON error from every service, never a 500 or a traceback."""

from __future__ import annotations

import requests

from .conftest import REQUEST_TIMEOUT, Stack

T = REQUEST_TIMEOUT


def _json_error(response: requests.Response, status: int) -> None:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]
    assert "Traceback" not in response.text


def test_bad_input_through_the_balancer(healthy_stack: Stack) -> None:
    lb = healthy_stack.lb
    headers = {**healthy_stack.auth(), "Content-Type": "application/json"}
    _json_error(requests.post(lb + "/longtask", data="{not json", headers=headers, timeout=T), 400)
    _json_error(requests.post(lb + "/longtask", data="x" * 2_000_000, headers=headers, timeout=T), 413)
    _json_error(requests.get(lb + "/no/such/route", timeout=T), 404)
    _json_error(requests.delete(lb + "/token", timeout=T), 405)
    _json_error(
        requests.put(lb + "/control", json={"algorithm": "fastest"}, headers=healthy_stack.admin(), timeout=T), 400
    )
    _json_error(requests.put(lb + "/control", data="[", headers=healthy_stack.admin(), timeout=T), 400)


def test_bad_input_on_each_service(healthy_stack: Stack) -> None:
    admin = healthy_stack.admin()
    for info in healthy_stack.services():
        _json_error(requests.get(info.url + "/definitely-missing", timeout=T), 404)
        _json_error(requests.put(info.url + "/control", data="{oops", headers=admin, timeout=T), 400)
        _json_error(requests.put(info.url + "/control", json={"no_such_knob": 1}, headers=admin, timeout=T), 400)
        _json_error(requests.put(info.url + "/control", json={"x": 1}, timeout=T), 401)
    cache = healthy_stack.url("cache")
    _json_error(
        requests.post(cache + "/cache/k", data="{", headers={"Content-Type": "application/json"}, timeout=T), 400
    )
    _json_error(requests.post(cache + "/cache/k", json={"novalue": 1}, timeout=T), 400)
    _json_error(requests.post(cache + "/cache/k", json={"value": 1, "ttl": -5}, timeout=T), 400)
    _json_error(requests.put(cache + "/cache/stats", json={"value": 1}, timeout=T), 405)
    db = healthy_stack.url("database")
    _json_error(requests.get(db + "/db", params={"limit": "lots"}, timeout=T), 400)
    _json_error(requests.put(db + "/db/x", json=[1, 2], timeout=T), 400)
    worker = healthy_stack.url("worker")
    _json_error(requests.post(worker + "/task", json={"duration": "long"}, timeout=T), 400)
    _json_error(
        requests.post(worker + "/task", data=b"\xff\xfe", headers={"Content-Type": "application/json"}, timeout=T), 400
    )
    _json_error(
        requests.put(
            healthy_stack.url("microservice-1") + "/control", json={"error_rate": 2}, headers=admin, timeout=T
        ),
        400,
    )
