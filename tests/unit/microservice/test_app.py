"""A microservice instance over HTTP: /process, injected errors, knobs."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.kit.config import ConfigError
from services.microservice.app import create_app

ADMIN = {"X-Admin-Token": "t"}


@pytest.fixture
def make_client(registry):
    def make(**overrides):
        settings = {"service_time_ms": 0, "service_id": "7", "instance": "microservice-7", "admin_token": "t"}
        settings.update(overrides)
        return create_app(settings, registry=registry).test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.mark.parametrize("method", ["get", "post"])
def test_process_reports_who_processed_it(client, method):
    response = getattr(client, method)("/process")
    assert response.status_code == 200
    assert response.get_json() == {
        "message": "Processed by microservice 7",
        "service_id": "7",
        "instance": "microservice-7",
    }


def test_process_refuses_other_methods(client):
    response = client.delete("/process")
    assert response.status_code == 405
    assert response.get_json()["status"] == 405


def test_error_rate_one_fails_every_call_with_503_json(make_client, registry):
    client = make_client(error_rate=1)
    for _ in range(3):
        response = client.get("/process")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == 503
        assert "microservice-7" in body["error"]
        assert body["service_id"] == "7"
    assert registry.get_sample_value("scalelab_injected_errors_total") == 3


def test_error_rate_knob_at_runtime(client):
    response = client.put("/control", headers=ADMIN, json={"error_rate": 1})
    assert response.status_code == 200
    assert response.get_json()["changed"] == {"error_rate": 1.0}
    assert client.get("/process").status_code == 503
    client.put("/control", headers=ADMIN, json={"error_rate": 0})
    assert client.get("/process").status_code == 200


def test_knobs_listing(client):
    knobs = client.get("/control", headers=ADMIN).get_json()["knobs"]
    assert {name: knob["value"] for name, knob in knobs.items()} == {
        "service_time_ms": 0.0,
        "extra_latency_ms": 0.0,
        "error_rate": 0.0,
        "work": "sleep",
        "cpu_work_ms": 5.0,
        "concurrency": 0.0,
    }
    assert knobs["work"]["choices"] == ["sleep", "cpu", "both"]
    assert knobs["error_rate"]["min"] == 0 and knobs["error_rate"]["max"] == 1


@pytest.mark.parametrize(
    "body", [{"error_rate": 2}, {"error_rate": -0.1}, {"extra_latency_ms": 60_001}, {"service_time_ms": "fast"}]
)
def test_bad_knob_values_are_400_and_change_nothing(client, body):
    response = client.put("/control", headers=ADMIN, json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]
    assert client.get("/process").status_code == 200
    knobs = client.get("/control", headers=ADMIN).get_json()["knobs"]
    assert knobs["error_rate"]["value"] == 0.0
    assert knobs["extra_latency_ms"]["value"] == 0.0


def test_control_needs_the_admin_token(client):
    assert client.put("/control", json={"error_rate": 1}).status_code == 401
    assert client.put("/control", headers={"X-Admin-Token": "x"}, json={"error_rate": 1}).status_code == 401
    assert client.get("/process").status_code == 200


def test_health(client):
    body = client.get("/health").get_json()
    assert (body["status"], body["service"], body["instance"]) == ("ok", "microservice", "microservice-7")


def test_instance_name_defaults_to_the_service(make_client):
    body = make_client(instance="").get("/process").get_json()
    assert body["instance"] == "microservice"


def test_requests_are_counted_by_route(client, registry):
    client.get("/process")
    client.get("/process")
    labels = {"route": "/process", "method": "GET", "status": "200"}
    assert registry.get_sample_value("scalelab_http_requests_total", labels) == 2
    assert registry.get_sample_value(
        "scalelab_instance_info", {"service": "microservice", "instance": "microservice-7"}
    )


def test_the_work_stops_at_the_callers_deadline_with_a_504_naming_the_instance(make_client):
    client = make_client(service_time_ms=2000)
    started = time.monotonic()
    response = client.get("/process", headers={"X-Request-Deadline": f"{time.time() + 0.2:.3f}"})
    assert response.status_code == 504
    assert "microservice-7" in response.get_json()["error"]
    assert time.monotonic() - started < 0.6


def test_a_deadline_with_time_to_spare_changes_nothing_and_a_bad_one_is_a_400(make_client):
    client = make_client(service_time_ms=10)
    assert client.get("/process", headers={"X-Request-Deadline": f"{time.time() + 5:.3f}"}).status_code == 200
    response = client.get("/process", headers={"X-Request-Deadline": "tomorrow"})
    assert response.status_code == 400 and "X-Request-Deadline" in response.get_json()["error"]


def test_cpu_work_costs_the_calls_cpu_time_and_sleep_costs_none(make_client):
    client = make_client(work="cpu", cpu_work_ms=30, service_time_ms=500)
    started, cpu = time.monotonic(), time.thread_time()
    assert client.get("/process").status_code == 200
    assert time.thread_time() - cpu >= 0.03  # computed on this (the test client's) thread
    assert time.monotonic() - started < 0.4  # and did not sleep the 500 ms service time
    client.put("/control", headers=ADMIN, json={"work": "sleep", "service_time_ms": 20})
    cpu = time.thread_time()
    assert client.get("/process").status_code == 200
    assert time.thread_time() - cpu < 0.015


def test_cpu_work_stops_at_the_callers_deadline(make_client):
    client = make_client(work="both", cpu_work_ms=5000)
    started = time.monotonic()
    response = client.get("/process", headers={"X-Request-Deadline": f"{time.time() + 0.2:.3f}"})
    assert response.status_code == 504 and "CPU work" in response.get_json()["error"]
    assert time.monotonic() - started < 0.6


def test_an_unknown_work_mode_stops_it_at_start_up(make_client):
    with pytest.raises(ConfigError, match="MICROSERVICE_WORK"):
        make_client(work="dance")


def test_concurrency_serves_that_many_calls_at_once_and_queues_the_rest(make_client):
    # The test client runs each call in the calling thread: four threads, two servers of 200 ms.
    client = make_client(service_time_ms=200)
    assert client.put("/control", headers=ADMIN, json={"concurrency": 2}).status_code == 200
    with ThreadPoolExecutor(4) as pool:
        started = time.monotonic()
        done = list(pool.map(lambda _: (client.get("/process").status_code, time.monotonic() - started), range(4)))
    assert [status for status, _ in done] == [200] * 4
    finished = sorted(seconds for _, seconds in done)
    assert finished[1] < 0.35 and 0.38 < finished[2] < 0.7  # two at once, then the other two


def test_a_queued_call_gives_up_at_its_deadline_with_504():
    from services.kit.deadline import Deadline
    from services.microservice.app import Servers

    servers = Servers()
    with servers.serving(1, Deadline.after(5), "a server"):
        started = time.monotonic()
        with pytest.raises(Exception) as waited, servers.serving(1, Deadline.after(0.2), "a free server of m-1"):
            pass
    assert waited.value.status == 504 and "a free server of m-1" in str(waited.value)
    assert 0.15 < time.monotonic() - started < 0.6
