"""A web page on another site, or one reached through DNS rebinding, changes nothing on the stack.

A real Chromium visits an attacker's page (attacker.test, which this browser resolves to
127.0.0.1) that fires the requests a hostile page can send without asking: text/plain and
form POSTs to every service, the control page and the load engine. Then it opens pages of the
stack by a rebound name (rebind.test:<the service's port>), as DNS rebinding would, and sends
same-origin writes from there. Afterwards nothing was stored, queued or started.
"""

from __future__ import annotations

import http.server
import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser

from tests.chromium import chromium
from tests.stack import REQUEST_TIMEOUT, Stack
from tests.unit.support import InThread

ATTACKER = "attacker.test"
REBOUND = "rebind.test"
T = REQUEST_TIMEOUT


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>not the lab</title><p>a page on another site</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[InThread]:
    """The attacker's web server, on a spare port of 127.0.0.1."""
    server = InThread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(names=(ATTACKER, REBOUND)) as launched:
        yield launched


def _press_start_load() -> str:
    """The control page's own callback request for pressing Start load (10 users)."""
    inputs = [{"id": "load-start", "property": "n_clicks", "value": 1}]
    state = [{"id": f"load-{field}", "property": "value", "value": value} for field, value in (
        ("users", 10), ("rate", 10), ("duration", 0), ("hot-keys", 10), ("mix_data_hot", 1), ("mix_data_new", 0),
        ("mix_process", 0), ("mix_longtask", 0))]  # fmt: skip
    return json.dumps({
        "output": "action-sink.children", "outputs": {"id": "action-sink", "property": "children"},
        "inputs": inputs, "changedPropIds": ["load-start.n_clicks"], "state": state,
    })  # fmt: skip


def _nothing_changed(stack: Stack, key: str, tasks_before: float) -> None:
    assert requests.get(stack.url("cache") + f"/cache/{key}", timeout=T).status_code == 404
    assert _tasks_accepted(stack) == tasks_before
    assert requests.get(stack.url("loadgen") + "/stats/requests", timeout=T).json()["state"] != "running"


def _tasks_accepted(stack: Stack) -> float:
    text = requests.get(stack.url("worker") + "/metrics", timeout=T).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("scalelab_http_requests_total{")
        and 'route="/task"' in line
        and 'method="POST"' in line
        and 'status="2' in line
    )


def test_a_page_on_another_site_can_change_nothing(browser: Browser, site: InThread, healthy_stack: Stack) -> None:
    key = f"xsite-{uuid.uuid4().hex[:8]}"
    tasks_before = _tasks_accepted(healthy_stack)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"http://{ATTACKER}:{site.port}/")
        shots = {
            "cache": (healthy_stack.url("cache") + f"/cache/{key}", "text/plain", json.dumps({"value": "poisoned"})),
            "worker": (healthy_stack.url("worker") + "/task", "text/plain", json.dumps({"duration": 0.1})),
            "dashboard": (
                healthy_stack.url("dashboard") + "/_dash-update-component",
                "text/plain",
                _press_start_load(),
            ),
            "loadgen": (
                healthy_stack.url("loadgen") + "/swarm",
                "application/x-www-form-urlencoded",
                "user_count=5&spawn_rate=5",
            ),
        }
        for url, kind, body in shots.values():
            # mode no-cors: the page cannot read the answer, but the request is sent: it must do nothing.
            tab.evaluate(
                "([url, kind, body]) => fetch(url, {method: 'POST', mode: 'no-cors', headers: {'Content-Type': kind},"
                " body}).catch(() => null)",
                [url, kind, body],
            )
        tab.wait_for_timeout(500)
    finally:
        context.close()
    _nothing_changed(healthy_stack, key, tasks_before)


@pytest.mark.parametrize("instance", ["cache", "worker", "dashboard", "loadgen", "load-balancer"])
def test_a_page_reached_by_a_rebound_name_gets_nothing(browser: Browser, healthy_stack: Stack, instance: str) -> None:
    # The attacker's name now points at 127.0.0.1: the page's origin is the service's own scheme and port.
    port = healthy_stack.orchestrator.get(instance).port
    key = f"rebind-{uuid.uuid4().hex[:8]}"
    tasks_before = _tasks_accepted(healthy_stack)
    context = browser.new_context()
    try:
        tab = context.new_page()
        answer = tab.goto(f"http://{REBOUND}:{port}/health")
        assert answer is not None and answer.status == 403
        writes = {
            "cache": (f"/cache/{key}", json.dumps({"value": "poisoned"})),
            "worker": ("/task", json.dumps({"duration": 0.1})),
            "dashboard": ("/_dash-update-component", _press_start_load()),
            "loadgen": ("/swarm", "user_count=5&spawn_rate=5"),
            "load-balancer": ("/lb/backends", json.dumps({"name": "evil", "url": "http://127.0.0.1:9"})),
        }
        path, body = writes[instance]
        # Same origin for the browser: it may read the answer, which must be a refusal.
        status = tab.evaluate(
            "([path, body]) => fetch(path, {method: 'POST', headers: {'Content-Type': 'text/plain'}, body})"
            ".then(r => r.status)",
            [path, body],
        )
        assert status == 403
    finally:
        context.close()
    _nothing_changed(healthy_stack, key, tasks_before)
