"""What the gateway's tests share: real cache, database and microservice apps on ephemeral ports, and gateways."""

from __future__ import annotations

import socket

import pytest
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from services.cache.app import create_app as create_cache
from services.database.app import create_app as create_database
from services.gateway.app import create_app as create_gateway
from services.microservice.app import create_app as create_microservice

from ..support import InThread

SECRET = "g" * 48
ADMIN = {"X-Admin-Token": "t"}


def closed_url() -> str:
    """Return the URL of a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Served(InThread):
    """A Flask app served by Werkzeug's threaded server on 127.0.0.1 and an ephemeral port."""

    def __init__(self, app) -> None:
        self.app = app
        super().__init__(make_server("127.0.0.1", 0, app, threaded=True))


@pytest.fixture
def serve():
    served: list[Served] = []

    def start(app) -> Served:
        served.append(Served(app))
        return served[-1]

    yield start
    for server in served:
        server.stop()


@pytest.fixture
def backends(serve, tmp_path):
    """A running cache, database and microservice, each with its own registry."""
    cache = serve(create_cache({}, registry=CollectorRegistry()))
    database_app = create_database(
        {"latency_ms": 0, "jitter_ms": 0, "seed_records": 5, "path": str(tmp_path / "db.sqlite3")},
        registry=CollectorRegistry(),
    )
    database = serve(database_app)
    microservice = serve(create_microservice({"service_time_ms": 0, "service_id": "1"}, registry=CollectorRegistry()))
    yield {"cache": cache, "database": database, "microservice": microservice}
    database_app.extensions["record_store"].close()


@pytest.fixture
def make_gateway(registry):
    apps = []

    def make(**overrides):
        settings = {
            "jwt_secret": SECRET,
            "admin_token": "t",
            "gateway_id": "2",
            "health_interval": 0.05,
            "cache_url": closed_url(),
            "database_url": closed_url(),
            "worker_url": closed_url(),
            "microservices": [],
        }
        settings.update(overrides)
        apps.append(create_gateway(settings, registry=registry))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["gateway"].microservices.checker.stop()


@pytest.fixture
def gateway(make_gateway, backends):
    return make_gateway(
        cache_url=backends["cache"].url,
        database_url=backends["database"].url,
        microservices=[f"microservice-1={backends['microservice'].url}"],
    )


def auth(client) -> dict[str, str]:
    return {"Authorization": "Bearer " + client.get("/token").get_json()["token"]}


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == status
    assert body["error"]
    return body
