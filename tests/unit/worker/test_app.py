"""The worker service over HTTP: submit, poll, fail, validate."""

from __future__ import annotations

import sys

import pytest
from prometheus_client import CollectorRegistry

from services.kit.config import ConfigError
from services.worker.app import create_app
from services.worker.queue import TaskQueue

from ..support import wait_for
from .flaky import FlakyQueue

ADMIN = {"X-Admin-Token": "t"}


@pytest.fixture
def make_app(tmp_path, registry):
    apps = []

    def make(**overrides):
        settings = {"path": str(tmp_path / "tasks.sqlite3"), "concurrency": 2, "admin_token": "t"}
        settings.update(overrides)
        apps.append(create_app(settings, registry=registry))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["task_runner"].stop()


@pytest.fixture
def client(make_app):
    return make_app(instance="worker-test").test_client()


def submit(client, payload) -> str:
    response = client.post("/task", json=payload)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "queued"
    return body["task_id"]


def finished(client, task_id: str) -> dict:
    def poll():
        body = client.get(f"/task/{task_id}").get_json()
        return body if body["status"] in ("completed", "failed") else None

    return wait_for(poll, what=f"task {task_id} to finish")


def test_a_task_runs_to_completion(client):
    task_id = submit(client, {"duration": 0, "job": "resize"})
    task = finished(client, task_id)
    assert task["status"] == "completed"
    assert task["task_id"] == task_id
    assert task["payload"] == {"duration": 0, "job": "resize"}
    assert task["result"] == {
        "echo": {"duration": 0, "job": "resize"},
        "duration_seconds": 0.0,
        "worker": "worker-test",
    }
    assert task["attempts"] == 1


def test_a_submitted_task_is_visible_at_once(client):
    task_id = submit(client, {"duration": 0})
    response = client.get(f"/task/{task_id}")
    assert response.status_code == 200
    assert response.get_json()["status"] in ("queued", "processing", "completed")


def test_many_tasks_all_complete(client):
    ids = [submit(client, {"duration": 0, "n": n}) for n in range(10)]
    results = [finished(client, task_id) for task_id in ids]
    assert [task["result"]["echo"]["n"] for task in results] == list(range(10))
    assert client.get("/tasks").get_json() == {
        "counts": {"queued": 0, "processing": 0, "completed": 10, "failed": 0},
        "concurrency": 2,
    }


def test_a_task_that_fails_reports_failed(client, registry):
    task_id = submit(client, {"duration": 0, "fail": True})
    task = finished(client, task_id)
    assert task["status"] == "failed"
    assert "task failed" in task["error"]
    assert "result" not in task
    assert registry.get_sample_value("scalelab_tasks_total", {"status": "failed"}) == 1


def test_error_rate_knob_fails_tasks(client):
    assert client.put("/control", headers=ADMIN, json={"error_rate": 1}).status_code == 200
    assert finished(client, submit(client, {"duration": 0}))["status"] == "failed"


def test_task_seconds_knob_sets_the_duration_of_tasks_that_name_none(client):
    assert client.put("/control", headers=ADMIN, json={"task_seconds": 0}).status_code == 200
    task = finished(client, submit(client, {"job": "no duration given"}))
    assert task["status"] == "completed"
    assert task["result"]["duration_seconds"] == 0.0


def test_unknown_task_is_404(client):
    response = client.get("/task/does-not-exist")
    assert response.status_code == 404
    assert response.get_json() == {
        "status": "not_found",
        "task_id": "does-not-exist",
        "error": "no task with id 'does-not-exist'",
    }


@pytest.mark.parametrize("duration", [-1, 61, "1", True, None, [1]])
def test_bad_duration_is_400_and_nothing_is_queued(client, duration):
    response = client.post("/task", json={"duration": duration})
    assert response.status_code == 400
    assert "duration" in response.get_json()["error"]
    assert sum(client.get("/tasks").get_json()["counts"].values()) == 0


def test_max_task_seconds_bounds_the_duration(make_app):
    client = make_app(max_task_seconds=5).test_client()
    assert client.post("/task", json={"duration": 6}).status_code == 400
    assert client.post("/task", json={"duration": 0}).status_code == 202


def test_malformed_body_is_400(client):
    response = client.post("/task", data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_any_json_payload_without_duration_is_accepted(make_app):
    client = make_app(task_seconds=0).test_client()
    for payload in (["a", "list"], "text", 7, {"nested": {"x": 1}}):
        assert finished(client, submit(client, payload))["result"]["echo"] == payload


def test_health_reports_queue_depth(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["service"] == "worker"
    assert body["queue_depth"] == 0


def test_tasks_survive_a_restart(make_app, tmp_path):
    first = make_app(concurrency=1)
    first.extensions["task_runner"].stop()
    task_id = submit(first.test_client(), {"duration": 0, "kept": True})
    # a new worker on the same queue file picks the task up
    second = create_app({"path": str(tmp_path / "tasks.sqlite3")}, registry=CollectorRegistry())
    try:
        task = finished(second.test_client(), task_id)
        assert task["status"] == "completed"
        assert task["result"]["echo"] == {"duration": 0, "kept": True}
    finally:
        second.extensions["task_runner"].stop()


# ------------------------------------------------------------------ bounds and a failing task store


def test_a_full_queue_answers_429_with_retry_after(make_app, registry):
    app = make_app(max_queued=2)
    app.extensions["task_runner"].stop()  # nothing is claimed: the queue only fills
    client = app.test_client()
    submit(client, {"duration": 0})
    submit(client, {"duration": 0})
    response = client.post("/task", json={"duration": 0})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    body = response.get_json()
    assert body["status"] == 429 and "WORKER_MAX_QUEUED" in body["error"] and body["max_queued"] == 2
    assert client.get("/tasks").get_json()["counts"]["queued"] == 2
    assert registry.get_sample_value("scalelab_tasks_submitted_total") == 2


def test_finished_tasks_expire_after_the_retention(make_app):
    client = make_app(task_retention_seconds=0.05).test_client()
    task_id = submit(client, {"duration": 0})
    assert finished(client, task_id)["status"] == "completed"
    wait_for(lambda: client.get(f"/task/{task_id}").status_code == 404, what="the task to expire")


@pytest.mark.parametrize(("setting", "value"), [("max_queued", 0), ("task_retention_seconds", 0)])
def test_bounds_must_be_positive(make_app, setting, value):
    with pytest.raises(ConfigError, match="WORKER_MAX_QUEUED"):
        make_app(**{setting: value})


@pytest.fixture
def flaky_app(tmp_path, registry):
    flaky = FlakyQueue(TaskQueue(tmp_path / "flaky.sqlite3"))
    app = create_app({"concurrency": 2, "admin_token": "t"}, registry=registry, queue=flaky)
    yield app, flaky
    app.extensions["task_runner"].stop()


def test_a_storage_error_in_a_route_is_503_with_retry_after_and_counted(flaky_app, registry):
    app, flaky = flaky_app
    client = app.test_client()
    flaky.fail(submit=1, get=1)
    response = client.post("/task", json={"duration": 0})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "database is locked" in response.get_json()["error"]
    task_id = submit(client, {"duration": 0})  # the next try goes through
    assert client.get(f"/task/{task_id}").status_code == 503
    assert finished(client, task_id)["status"] == "completed"
    assert registry.get_sample_value("scalelab_worker_storage_errors_total") == 2


def test_health_reports_degraded_with_200_while_the_store_fails_and_the_pool_stays_full(flaky_app):
    app, flaky = flaky_app
    client = app.test_client()
    flaky.fail(claim=4)
    task_id = submit(client, {"duration": 0})
    wait_for(flaky.pending(), what="the planned failures")
    response = client.get("/health")
    assert response.status_code == 200  # still serving: the balancer and the launcher keep it
    body = response.get_json()
    assert body["status"] == "degraded"
    assert any("database is locked" in reason for reason in body["reasons"])
    assert body["threads_alive"] == body["concurrency"] == 2
    assert finished(client, task_id)["status"] == "completed"


def test_health_survives_a_store_that_cannot_count(flaky_app):
    app, flaky = flaky_app
    flaky.fail(depth=1)
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "degraded"
    assert response.get_json()["queue_depth"] == 0


def test_a_task_that_calls_exit_fails_alone_and_the_pool_stays_full(client):
    task_id = submit(client, {"duration": 0})
    runner = client.application.extensions["task_runner"]
    runner._execute = lambda payload: sys.exit(3)
    failed = finished(client, submit(client, {"duration": 0}))
    assert failed["status"] == "failed" and "exit(3)" in failed["error"]
    assert finished(client, task_id)["status"] in ("completed", "failed")  # it ran before or after the swap
    body = client.get("/health").get_json()
    assert body["threads_alive"] == body["concurrency"] and body["thread_restarts"] == 0


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt])
def test_a_runner_thread_that_dies_anyway_is_replaced_and_health_says_so(flaky_app, registry, error):
    app, flaky = flaky_app
    client = app.test_client()
    flaky.fail(raising=error, claim=1)
    wait_for(flaky.pending(), what="the planned failure")
    body = wait_for(lambda: (b := client.get("/health").get_json())["thread_restarts"] == 1 and b, what="a restart")
    assert body["status"] == "degraded"
    assert any("died" in reason and "replaced" in reason for reason in body["reasons"])
    assert body["threads_alive"] == body["concurrency"] == 2
    assert registry.get_sample_value("scalelab_worker_thread_restarts_total") == 1
    assert finished(client, submit(client, {"duration": 0}))["status"] == "completed"
