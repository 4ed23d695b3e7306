"""The API documents: every route a service answers is in its /openapi.json, and a wrong input is a 400 naming it."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from services.balancer.apidoc import ON_THE_WAY, merged
from services.balancer.app import create_app as create_balancer
from services.cache.app import create_app as create_cache
from services.database.app import create_app as create_database
from services.gateway.app import create_app as create_gateway
from services.kit.models import Task
from services.microservice.app import create_app as create_microservice
from services.worker.app import create_app as create_worker
from services.worker.queue import STATUSES

ADMIN = {"X-Admin-Token": "t"}


@pytest.fixture
def apps(tmp_path) -> Iterator[dict]:
    common = {"admin_token": "t"}
    built = {
        "cache": create_cache(common, registry=CollectorRegistry()),
        "database": create_database({**common, "path": str(tmp_path / "db.sqlite3")}, registry=CollectorRegistry()),
        "microservice": create_microservice(common, registry=CollectorRegistry()),
        "worker": create_worker({**common, "path": str(tmp_path / "t.sqlite3")}, registry=CollectorRegistry()),
        "gateway": create_gateway({**common, "jwt_secret": "s"}, registry=CollectorRegistry()),
    }
    yield built
    built["worker"].extensions["task_runner"].stop()
    built["gateway"].extensions["gateway"].microservices.checker.stop()
    built["database"].extensions["record_store"].close()


def document(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.mark.parametrize("name", ["cache", "database", "microservice", "worker", "gateway"])
def test_every_route_a_service_answers_is_in_its_document(apps, name):
    app = apps[name]
    doc = document(app)
    assert doc["openapi"].startswith("3.1")
    answered = {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ("static", "openapi_json")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert answered == documented


def test_every_route_of_the_balancer_is_in_its_document():
    app = create_balancer({"backends": ["g=http://127.0.0.1:9"], "admin_token": "t"}, registry=CollectorRegistry())
    own = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method not in ("*", "HEAD") and route.resource.canonical != "/openapi.json"
    }
    from services.balancer.apidoc import api

    assert own == {(method, path) for path, item in api.spec["paths"].items() for method in item}


@pytest.mark.parametrize(
    ("name", "call", "label", "field"),
    [
        ("database", lambda c: c.get("/db?limit=ten"), "parameter", "limit"),
        ("database", lambda c: c.get("/db?limit=5000"), "parameter", "limit"),
        ("database", lambda c: c.get("/db?limt=5"), "parameter", "limt"),
        ("cache", lambda c: c.post("/cache/k", json={"value": 1, "ttl": "soon"}), "field", "ttl"),
        ("cache", lambda c: c.post("/cache/k", json={"ttl": 5}), "field", "value"),
        ("cache", lambda c: c.get("/cache?key="), "parameter", "key"),
        ("gateway", lambda c: c.post("/pool/backends", json={"name": 7, "url": "x"}, headers=ADMIN), "field", "name"),
    ],
)
def test_a_wrong_input_is_a_400_naming_it(apps, name, call, label, field):
    response = call(apps[name].test_client())
    assert response.status_code == 400
    body = response.get_json()
    assert body[label] == field and repr(field) in body["error"]


def test_the_control_body_names_this_instances_knobs_as_they_are_now(apps):
    app = apps["gateway"]
    knobs = document(app)["components"]["schemas"]["KnobChanges"]
    assert knobs["additionalProperties"] is False
    assert knobs["properties"]["cache_enabled"] == {"type": "boolean"}
    assert knobs["properties"]["algorithm"]["enum"][0] == "round_robin"
    added = app.test_client().post("/pool/backends", json={"name": "m9", "url": "http://127.0.0.1:9"}, headers=ADMIN)
    assert added.status_code == 201
    weight = document(app)["components"]["schemas"]["KnobChanges"]["properties"]["weight.m9"]
    assert weight == {"type": "integer", "minimum": 0, "maximum": 100}


def test_a_new_task_links_to_its_status(apps):
    links = document(apps["worker"])["paths"]["/task"]["post"]["responses"]["202"]["links"]
    assert links["GET /task/{task_id}"]["parameters"] == {"task_id": "$response.body#/task_id"}


def test_the_documented_task_statuses_are_the_queues():
    assert typing.get_args(Task.model_fields["status"].annotation) == STATUSES


def test_the_balancers_document_adds_the_gateways_paths_with_what_it_may_answer_itself():
    own = {"info": {"description": "b"}, "paths": {"/health": {"get": {"responses": {}}}}, "components": {}}
    gateway = {
        "paths": {
            "/health": {"get": {"responses": {"200": {}}, "tags": ["x"]}},
            "/data": {"get": {"responses": {"200": {"description": "ok"}}, "tags": ["clients"]}},
        },
        "components": {"schemas": {"Data": {"type": "object"}}},
    }
    doc = merged(own, gateway)
    assert doc["paths"]["/health"] == {"get": {"responses": {}}}  # its own wins
    assert set(doc["paths"]["/data"]["get"]["responses"]) == {"200", *ON_THE_WAY}
    assert doc["components"]["schemas"]["Data"] == {"type": "object"}
    assert {"name": "clients"} in doc["tags"]
    assert "could be read just now" in merged(own, None)["info"]["description"]
