"""The gateway's listener on 127.0.0.1: plain reads answered on its event loop, the rest passed to its app."""

from __future__ import annotations

import re
import socket
import time
from email.utils import parsedate_to_datetime

import pytest
import requests
from werkzeug.test import Client

from services.gateway.front import GatewayListener
from services.kit.front import start_listener

from .conftest import Served, closed_url

LOOKUPS = "scalelab_gateway_cache_lookups_total"


class Fronted:
    """A gateway app served on a loopback port, and its listener in front of it."""

    def __init__(self, app, app_port: int) -> None:
        self.app = app
        sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.running = start_listener(GatewayListener(app, app_port, app.extensions["gateway"].config), sock)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def token(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.get("/token").json()["token"]}


@pytest.fixture
def front():
    fronts: list[Fronted] = []
    served: list[Served] = []

    def make(app, app_reachable: bool = True) -> Fronted:
        if app_reachable:
            served.append(Served(app))
            port = served[-1].port
        else:
            port = int(closed_url().rsplit(":", 1)[1])
        fronts.append(Fronted(app, port))
        return fronts[-1]

    yield make
    for fronted in fronts:
        fronted.running.stop()
    for server in served:
        server.stop()


def json_error(answer: requests.Response, status: int) -> dict:
    assert answer.status_code == status
    body = answer.json()
    assert body["status"] == status and body["error"]
    return body


def _without_times(body: dict) -> dict:
    if "error" in body:
        body["error"] = re.sub(r"\d+\.\d+", "T", body["error"])
    return body


def test_a_plain_read_is_answered_as_the_app_answers_it_miss_then_hit(gateway, front, registry):
    fronted = front(gateway)
    headers = fronted.token()
    miss = fronted.get("/data?key=3", headers=headers)
    hit = fronted.get("/data?key=3", headers=headers)
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert miss.json()["cached"] is False and hit.json()["cached"] is True
    assert hit.json() == miss.json() | {"cached": True}
    assert hit.headers["Content-Type"] == "application/json"
    # One lookup counted per read, as through the app: the miss's rest ran on a thread, not asked again.
    assert registry.get_sample_value(LOOKUPS, {"result": "miss"}) == 1
    assert registry.get_sample_value(LOOKUPS, {"result": "hit"}) == 1
    flask = Client(gateway).get("/data?key=3", headers=headers)
    assert flask.get_json() == hit.json()
    counted = registry.get_sample_value(
        "scalelab_http_requests_total", {"route": "/data", "method": "GET", "status": "200"}
    )
    assert counted == 3  # two through the listener, one through the app, under the same route


def test_a_read_the_listener_answers_carries_the_date(gateway, front):
    fronted = front(gateway)
    answer = fronted.get("/data", headers=fronted.token())
    assert abs(parsedate_to_datetime(answer.headers["Date"]).timestamp() - time.time()) < 5


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not.a.token"}, {"X-Request-Deadline": "soon"}], ids=str
)
def test_a_refused_read_is_the_apps_error(gateway, front, headers):
    fronted = front(gateway)
    if "X-Request-Deadline" in headers:
        headers = {**headers, **fronted.token()}
    mine = fronted.get("/data", headers=headers)
    theirs = Client(gateway).get("/data", headers=headers)
    assert mine.status_code == theirs.status_code >= 400
    assert _without_times(mine.json()) == _without_times(theirs.get_json())


@pytest.mark.parametrize("path", ["/data?key=a%2Fb", "/data?key=", "/health", "/openapi.json", "/nowhere"])
def test_anything_but_a_plain_read_is_the_apps_answer(gateway, front, path):
    fronted = front(gateway)
    headers = fronted.token()
    Client(gateway).get(path, headers=headers)  # a read's key is cached from here on, for both
    mine = fronted.get(path, headers=headers)
    theirs = Client(gateway).get(path, headers=headers)
    assert mine.status_code == theirs.status_code
    assert mine.headers["Content-Type"] == theirs.headers["Content-Type"]
    if path != "/health":  # its uptime moves
        assert mine.content == theirs.data


def test_a_read_for_another_host_is_refused_by_the_app(gateway, front):
    fronted = front(gateway)
    answer = fronted.get("/data", headers={**fronted.token(), "Host": "evil.example"})
    assert "evil.example" in json_error(answer, 403)["error"]


def test_a_change_with_a_body_reaches_the_app(gateway, front):
    fronted = front(gateway)
    headers = {**fronted.token(), "Content-Type": "application/json"}
    answer = requests.post(fronted.url + "/process", json={"data": "x"}, headers=headers, timeout=10)
    theirs = Client(gateway).post("/process", json={"data": "x"}, headers=headers)
    assert answer.status_code == theirs.status_code
    assert answer.json().keys() == theirs.get_json().keys()


def test_a_read_with_the_cache_down_comes_from_the_database(make_gateway, backends, front, registry):
    gateway = make_gateway(cache_url=closed_url(), database_url=backends["database"].url)
    fronted = front(gateway)
    answer = fronted.get("/data?key=2", headers=fronted.token())
    assert answer.status_code == 200 and answer.json()["cached"] is False
    assert answer.json()["data"]["id"] == "2"
    assert registry.get_sample_value(LOOKUPS, {"result": "error"}) == 1


def test_a_gateway_whose_app_does_not_answer_says_so_in_json(make_gateway, front):
    fronted = front(make_gateway(), app_reachable=False)
    answer = fronted.get("/token")
    assert "gateway's app did not answer" in json_error(answer, 503)["error"]
    assert answer.headers["Retry-After"] == "1"
    assert fronted.get("/health").status_code == 200  # answered on the listener's loop
