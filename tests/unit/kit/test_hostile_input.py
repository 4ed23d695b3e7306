"""No input gives a 5xx: hostile bodies, query parameters, headers, methods and knob values sent to every Flask service.

Each service is built by its own ``create_app(overrides, registry)``; the gateway gets a real cache,
database, worker and microservice behind it, so its requests go all the way through.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from services.__main__ import service_packages

from ..support import InThread

ADMIN_TOKEN = "t"
SECRET = "h" * 48
SERVICES = Path(__file__).resolve().parents[3] / "services"

# Bodies a client may send: JSON a parser chokes on, numbers JSON has no room for, wrong types.
HOSTILE_BODIES: list[bytes] = [
    b"[" * 100_000,
    b'{"a":' * 100_000,
    b"[" * 100_000 + b"]" * 100_000,
    b"NaN",
    b'{"value": NaN, "ttl": 1}',
    b'{"value": Infinity}',
    b'{"value": -Infinity}',
    b'{"value": [1, {"x": 1e400}]}',
    b'{"value": 1, "ttl": 1e400}',
    b'{"value": 1, "ttl": 1e308}',
    b'{"value": 1, "ttl": ' + b"9" * 400 + b"}",
    b'{"value": ' + b"9" * 5000 + b"}",
    b'{"duration": 1e400}',
    b'{"duration": ' + b"9" * 400 + b"}",
    b'{"duration": -1e308}',
    b'{"name": "x", "url": "http://127.0.0.1:99999"}',
    b'{"name": "x", "url": "http://"}',
    b'{"name": "", "url": "http://127.0.0.1:1"}',
    b'{"name": "a/b", "url": "http://127.0.0.1:1", "weight": 1e400}',
    b'{"name": "y", "url": "http://127.0.0.1:1", "weight": ' + b"9" * 400 + b"}",
    b"\xff\xfe\x00",
    b"\xed\xa0\x80",
    b'"\\ud800"',
    b"null",
    b"[]",
    b'"text"',
    b"12",
    b"",
    b"{",
]
# Values for every numeric query parameter: digits int() refuses, digits it takes but ASCII has not,
# numbers out of every range, and no number at all.
HOSTILE_NUMBERS = ["²", "١٢", "٣", "9" * 5000, "1" + "0" * 30, "-1", "-0", "+1", "1.5", "1e3", "", " 1", "0x10", "NaN"]
QUERY_NAMES = ["key", "limit", "offset"]
HOSTILE_PATH_PARTS = ["%ED%A0%80", "%FF", "x" * 5000, "..%2F..", "%00", "²"]
HOSTILE_HEADERS: list[dict[str, str]] = [
    {"Authorization": "Bearer " + "x" * 5000},
    {"Authorization": "Bearer é.é.é"},
    {"Authorization": "Bearer a.b.c"},
    {"X-Admin-Token": "é" * 10},
    {"X-Request-Deadline": "NaN"},
    {"X-Request-Deadline": "inf"},
    {"X-Request-Deadline": "1e400"},
    {"X-Request-Deadline": "9" * 5000},
    {"X-Request-Deadline": "²"},
    {"X-Request-Deadline": "-1"},
]
KNOB_VALUES: list[Any] = [1e308, -1e308, 10**400, -(10**400), 2**63, "NaN", None, [1], {"a": 1}]


def flask_services() -> list[str]:
    """Return the services whose ``create_app`` builds a Flask app (the balancer's is aiohttp's)."""
    return [
        name
        for name in service_packages()
        if inspect.signature(importlib.import_module(f"services.{name}.app").create_app).return_annotation == "Flask"
    ]


class Served(InThread):
    """A Flask app served by Werkzeug's threaded server on 127.0.0.1 and an ephemeral port."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        super().__init__(make_server("127.0.0.1", 0, app, threaded=True))


def create(package: str, overrides: dict[str, Any]) -> Flask:
    module = importlib.import_module(f"services.{package}.app")
    return module.create_app({"admin_token": ADMIN_TOKEN, **overrides}, CollectorRegistry())


def stop(app: Flask) -> None:
    """Stop what an app started: the worker's runner threads, the gateway's checks, the database file."""
    if "task_runner" in app.extensions:
        app.extensions["task_runner"].stop()
    if "gateway" in app.extensions:
        app.extensions["gateway"].microservices.checker.stop()
    if "record_store" in app.extensions:
        app.extensions["record_store"].close()


BASE_OVERRIDES: dict[str, dict[str, Any]] = {
    "cache": {},
    "database": {"latency_ms": 0, "jitter_ms": 0, "seed_records": 3},
    "microservice": {"service_time_ms": 0},
    "worker": {"concurrency": 1, "task_seconds": 0, "max_task_seconds": 0.01},
}


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Flask]]:
    """Every Flask service, the gateway in front of real ones."""
    tmp = tmp_path_factory.mktemp("hostile")
    built: dict[str, Flask] = {}
    served: list[Served] = []
    try:
        for package, overrides in BASE_OVERRIDES.items():
            paths = {"path": str(tmp / f"{package}.sqlite3")} if package in ("database", "worker") else {}
            built[package] = create(package, {**overrides, **paths})
            served.append(Served(built[package]))
        urls = {package: server.url for package, server in zip(BASE_OVERRIDES, served, strict=True)}
        built["gateway"] = create(
            "gateway",
            {
                "jwt_secret": SECRET,
                "health_interval": 0.05,
                "cache_url": urls["cache"],
                "database_url": urls["database"],
                "worker_url": urls["worker"],
                "microservices": [f"only={urls['microservice']}"],
            },
        )
        yield built
    finally:
        for server in served:
            server.stop()
        for app in built.values():
            stop(app)


def test_every_flask_service_is_covered(apps):
    assert set(apps) == set(flask_services())


def fill(rule: str, part: str) -> str:
    """Return ``rule`` (``/cache/<path:key>``) with every variable replaced by ``part``."""
    return re.sub(r"<[^>]+>", part, rule)


def assert_no_5xx(response, what: str) -> None:
    assert response.status_code < 500, (what, response.status_code, response.get_data(as_text=True)[:300])
    if response.status_code >= 400:
        assert response.is_json, (what, response.get_data(as_text=True)[:300])
        assert response.get_json()["error"], what


def auth_headers(app: Flask) -> dict[str, str]:
    headers = {"X-Admin-Token": ADMIN_TOKEN}
    if "gateway" in app.extensions:
        headers["Authorization"] = "Bearer " + app.extensions["gateway"].tokens.issue()
    return headers


def requests_for(app: Flask) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(method, path, test-client keyword arguments)`` for every hostile request to ``app``."""
    good = auth_headers(app)
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        path = fill(rule.rule, "k")
        for method in methods:
            for body in HOSTILE_BODIES:
                yield method, path, {"data": body, "headers": {**good, "Content-Type": "application/json"}}
            for name in QUERY_NAMES:
                for number in HOSTILE_NUMBERS:
                    yield method, f"{path}?{name}={quote(number)}", {"headers": good}
                for part in HOSTILE_PATH_PARTS:  # already percent-encoded, as a client would send them
                    yield method, f"{path}?{name}={part}", {"headers": good}
            for part in HOSTILE_PATH_PARTS:
                if "<" in rule.rule:
                    yield method, fill(rule.rule, part), {"headers": good, "json": {"value": 1}}
            for headers in HOSTILE_HEADERS:
                yield method, path, {"headers": {**good, **headers}, "json": {"value": 1, "duration": 0}}
        yield "FOO", path, {"headers": good}


@pytest.mark.parametrize("package", flask_services())
def test_no_hostile_request_gets_a_5xx(apps, package):
    client = apps[package].test_client()
    for method, path, kwargs in requests_for(apps[package]):
        assert_no_5xx(client.open(path, method=method, **kwargs), f"{method} {path[:80]} {str(kwargs)[:120]}")
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("package", flask_services())
def test_no_knob_value_gets_a_5xx_or_sticks(apps, package):
    client = apps[package].test_client()
    headers = auth_headers(apps[package])
    before = client.get("/control", headers=headers).get_json()["knobs"]
    for name in before:
        for value in KNOB_VALUES:
            body = json.dumps({name: value})
            response = client.put("/control", data=body, headers={**headers, "Content-Type": "application/json"})
            assert_no_5xx(response, f"{name}={str(value)[:40]}")
            assert response.status_code == 400, (name, str(value)[:40])
    assert client.get("/control", headers=headers).get_json()["knobs"] == before
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("package", flask_services())
def test_an_unknown_method_is_counted_as_other(package):
    registry = CollectorRegistry()
    module = importlib.import_module(f"services.{package}.app")
    overrides: dict[str, Any] = {"admin_token": ADMIN_TOKEN, **BASE_OVERRIDES.get(package, {})}
    if package == "gateway":
        overrides.update(jwt_secret=SECRET, microservices=[])
    if package in ("database", "worker"):
        overrides["path"] = ":memory:"
    app = module.create_app(overrides, registry)
    try:
        client = app.test_client()
        for n in range(5):
            client.open("/health", method=f"METHOD{n}")
        methods = [
            sample.labels["method"]
            for metric in registry.collect()
            if metric.name == "scalelab_http_requests"
            for sample in metric.samples
            if sample.name.endswith("_total")
        ]
        assert methods == ["other"]
        assert "METHOD0" not in client.get("/metrics").get_data(as_text=True)
    finally:
        stop(app)
