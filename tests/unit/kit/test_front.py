"""A Flask service behind the kit's listener on 127.0.0.1: lanes that never block on its loop, the rest to the app."""

from __future__ import annotations

import socket
import time
from email.utils import parsedate_to_datetime

import pytest
import requests
from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server
from werkzeug.test import Client

from services.cache.app import create_app as create_cache
from services.kit.config import load_config
from services.kit.front import ExpressListener, start_listener
from services.kit.settings import ServiceSettings

from ..support import InThread

REQUESTS = "scalelab_http_requests_total"
READ_ROUTE = "/cache/<path:key>"


class Fronted:
    """The cache app on a loopback port (Werkzeug), and the kit's listener in front of it."""

    def __init__(self, app_port: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.app = create_cache({}, registry=self.registry)
        self.served = InThread(make_server("127.0.0.1", 0, self.app, threaded=True)) if app_port is None else None
        port = self.served.port if self.served is not None else app_port
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.running = start_listener(ExpressListener(self.app, port, load_config(ServiceSettings)), sock)

    def stop(self) -> None:
        self.running.stop()
        if self.served is not None:
            self.served.stop()

    def reads_counted(self, status: str) -> float:
        labels = {"route": READ_ROUTE, "method": "GET", "status": status}
        return self.registry.get_sample_value(REQUESTS, labels) or 0.0


@pytest.fixture
def fronted():
    made: list[Fronted] = []

    def make(app_port: int | None = None) -> Fronted:
        made.append(Fronted(app_port))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def test_a_plain_read_is_answered_on_the_loop_as_the_app_answers_it(fronted):
    cache = fronted()
    stored = requests.post(cache.url + "/cache/data:k1", json={"value": {"n": 1}, "ttl": 60}, timeout=5)
    assert stored.status_code == 201  # a write goes through to the app
    mine = requests.get(cache.url + "/cache/data:k1", timeout=5)
    theirs = Client(cache.app).get("/cache/data:k1")
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["value"] == theirs.get_json()["value"] == {"n": 1}
    assert mine.headers["Content-Type"] == "application/json"
    assert abs(parsedate_to_datetime(mine.headers["Date"]).timestamp() - time.time()) < 5
    assert cache.reads_counted("200") == 2  # the loop's read and the app's, under one route


def test_a_miss_is_the_apps_404(fronted):
    cache = fronted()
    mine = requests.get(cache.url + "/cache/nothing-here", timeout=5)
    theirs = Client(cache.app).get("/cache/nothing-here")
    assert mine.status_code == theirs.status_code == 404
    assert mine.json() == theirs.get_json()
    assert cache.reads_counted("404") == 2


@pytest.mark.parametrize("path", ["/cache/a%2Fb", "/cache/data:k1?lease=true", "/cache/stats", "/health", "/nowhere"])
def test_anything_a_lane_does_not_take_is_the_apps_answer(fronted, path):
    cache = fronted()
    mine = requests.get(cache.url + path, timeout=5)
    theirs = Client(cache.app).get(path)
    assert mine.status_code == theirs.status_code
    assert mine.headers["Content-Type"] == theirs.headers["Content-Type"]
    assert mine.json().keys() == theirs.get_json().keys()


def test_a_read_for_another_host_is_refused_in_json(fronted):
    cache = fronted()
    answer = requests.get(cache.url + "/cache/data:k1", headers={"Host": "evil.example"}, timeout=5)
    assert answer.status_code == 403
    assert "evil.example" in answer.json()["error"]


def test_a_service_whose_app_does_not_answer_says_so_in_json(fronted):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cache = fronted(app_port=closed)
    answer = requests.get(cache.url + "/cache/stats", timeout=5)
    assert answer.status_code == 503
    assert answer.json()["error"] == "cache's app did not answer; see cache's log"
    assert answer.headers["Retry-After"] == "1"


def test_a_request_the_listener_cannot_read_is_counted_as_the_app_counts_one(fronted):
    cache = fronted()
    port = int(cache.url.rsplit(":", 1)[1])
    for n in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(f"BREW{n} /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            assert raw.recv(65536).startswith(b"HTTP/1.1 400 ")
    labels = {"route": "unmatched", "method": "other", "status": "400"}
    assert cache.registry.get_sample_value(REQUESTS, labels) == 3
