"""The express lane: ordinary requests on a named route skip Flask; everything else is Flask's, unchanged."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from services.kit.app import create_service_app
from services.kit.errors import ApiError
from services.kit.express import EXPRESS, express
from services.kit.knobs import Knobs
from services.kit.openapi import service_api
from services.kit.settings import ServiceSettings


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def app(registry):
    settings = ServiceSettings(instance="thing-1", threads=1, queued_requests=0, reserved_threads=1)
    flask_app = create_service_app("thing", settings, Knobs([], registry), registry, service_api("thing", "A test."))
    seen: list[str] = []

    @flask_app.get("/item/<name>")
    def item(name: str):
        seen.append(name)
        return {"name": name, "by": "flask"}

    def lane(environ):
        name = environ["PATH_INFO"][len("/item/") :]
        if name == "odd":
            return None  # not ordinary: Flask serves it
        if name == "gone":
            raise ApiError(410, "item 'gone' was removed; ask for another", headers={"Retry-After": "3"}, name=name)
        if name == "broken":
            raise RuntimeError("a bug")
        return 200, {"name": name, "by": "lane"}, {}

    express(flask_app, "/item/", "/item/<name>", lane, prefix=True)
    flask_app.extensions["seen"] = seen
    return flask_app


def count(registry, route: str, status: int) -> float:
    labels = {"route": route, "method": "GET", "status": str(status)}
    return registry.get_sample_value("scalelab_http_requests_total", labels) or 0


def test_an_ordinary_request_is_answered_by_the_lane_and_counted_under_the_flask_route(app, registry):
    answer = app.test_client().get("/item/a")
    assert answer.status_code == 200 and answer.get_json() == {"name": "a", "by": "lane"}
    assert answer.headers["Content-Type"] == "application/json"
    assert int(answer.headers["Content-Length"]) == len(answer.data)
    assert app.extensions["seen"] == []
    assert count(registry, "/item/<name>", 200) == 1
    assert registry.get_sample_value("scalelab_http_request_duration_seconds_count", {"route": "/item/<name>"}) == 1
    assert registry.get_sample_value("scalelab_http_requests_in_flight") == 0


def test_what_the_lane_hands_back_flask_serves_and_counts_once(app, registry):
    answer = app.test_client().get("/item/odd")
    assert answer.get_json() == {"name": "odd", "by": "flask"}
    assert count(registry, "/item/<name>", 200) == 1


@pytest.mark.parametrize("method", ["HEAD", "POST"])
def test_other_methods_are_flasks(app, method):
    answer = app.test_client().open("/item/a", method=method)
    assert answer.status_code == (200 if method == "HEAD" else 405)
    assert app.extensions["seen"] == (["a"] if method == "HEAD" else [])


def test_an_unknown_host_is_refused_by_flask_as_before(app):
    answer = app.test_client().get("/item/a", headers={"Host": "evil.example"})
    assert answer.status_code == 403 and "SCALELAB_ALLOWED_HOSTS" in answer.get_json()["error"]


def test_an_api_error_is_the_kits_json_error_with_its_headers(app, registry):
    answer = app.test_client().get("/item/gone")
    assert answer.status_code == 410 and answer.status == "410 GONE"
    assert answer.get_json() == {"error": "item 'gone' was removed; ask for another", "status": 410, "name": "gone"}
    assert answer.headers["Retry-After"] == "3"
    assert count(registry, "/item/<name>", 410) == 1


def test_a_crash_is_a_json_500_and_the_traceback_stays_in_the_log(app, caplog):
    answer = app.test_client().get("/item/broken")
    assert answer.status_code == 500
    assert answer.get_json() == {"error": "internal error; see the service log", "status": 500}
    assert "a bug" in caplog.text


def test_a_busy_instance_refuses_in_the_lane_and_gives_the_slot_back(app, registry):
    lanes = app.extensions[EXPRESS]
    lanes._admission.enter()  # the one request thread is taken
    busy = app.test_client().get("/item/a")
    assert busy.status_code == 503 and "thing-1 is busy" in busy.get_json()["error"]
    assert busy.headers["Retry-After"] == "1"
    lanes._admission.leave()
    assert app.test_client().get("/item/a").status_code == 200
    assert app.test_client().get("/item/b").status_code == 200  # the lane gave its slot back


def test_health_answers_the_same_through_the_lane_and_through_flask(app):
    lanes = app.extensions[EXPRESS]
    fast = app.test_client().get("/health")
    slow = Client(lanes.behind).get("/health")
    assert fast.status == slow.status
    fast_body, slow_body = fast.get_json(), slow.get_json()
    assert fast_body.pop("uptime_seconds") <= slow_body.pop("uptime_seconds")
    assert fast_body == slow_body == {"status": "ok", "service": "thing", "instance": "thing-1"}
    assert fast.headers["Content-Type"] == slow.headers["Content-Type"]
