"""The control app's server: /health and /metrics, the password off loopback, no script from outside."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from dashboard.app import PASSWORD_USER, admin_token_source, create_app, orchestrator_for
from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from scalelab.orchestrators.base import OrchestratorError
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config
from tests.unit.standins import closed_port
from tests.unit.support import wait_for

PASSWORD = "s3cret-Pass"
# Every script and stylesheet the index page loads, by its address.
ASSET = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""")
URL = re.compile(r"""(?:https?:)?//[^\s"'<>\\]+""")


ADMIN = {"X-Admin-Token": "t"}


def config(**overrides: Any) -> DashboardConfig:
    """Return the app's configuration from ``overrides`` only."""
    return load_config(DashboardConfig, overrides, environ={})


@pytest.fixture
def make_lab(tmp_path: Path) -> Callable[..., Lab]:
    """Build Labs over an empty local stack, each with a fresh registry; their samplers are never started."""

    def make(**overrides: Any) -> Lab:
        lab_config = config(run_dir=str(tmp_path), **overrides)
        return Lab(lab_config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())

    return make


@pytest.fixture
def lab(make_lab: Callable[..., Lab]) -> Lab:
    """A Lab served on loopback."""
    return make_lab()


@pytest.fixture
def page(lab: Lab) -> FlaskClient:
    """A test client of the app served on loopback."""
    return create_app(lab).server.test_client()


@pytest.fixture
def guarded(make_lab: Callable[..., Lab]) -> FlaskClient:
    """A test client of the app served beyond loopback, with a password."""
    return create_app(make_lab(host="0.0.0.0", password=PASSWORD)).server.test_client()


def basic(user: str, password: str) -> dict[str, str]:
    """Return the Authorization header a browser sends for ``user`` and ``password``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# ------------------------------------------------------------------ /health and /metrics


def test_health_answers_json_before_the_first_sample(page: FlaskClient):
    response = page.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "instance": "dashboard",
        "sampled_seconds_ago": None,
        "figures_from": "none",
        "instances_seen": 0,
    }


def test_metrics_export_the_control_actions(lab: Lab, page: FlaskClient):
    lab.actions.finish(lab.actions.begin("kill", "gateway-2"), True)
    response = page.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'scalelab_control_actions_total{action="kill",outcome="ok",target="gateway-2"} 1.0' in text
    assert 'scalelab_control_action_last_timestamp_seconds{action="kill",target="gateway-2"}' in text


def test_the_page_is_served_on_loopback_without_a_password(page: FlaskClient):
    response = page.get("/")
    assert response.status_code == 200
    assert "<title>ScaleLab control</title>" in response.get_data(as_text=True)
    assert page.get("/_dash-layout").status_code == 200


# ------------------------------------------------------------------ the password


@pytest.mark.parametrize("path", ["/", "/_dash-layout", "/_dash-dependencies", "/assets/scalelab.css"])
def test_off_loopback_the_page_asks_for_the_password(guarded: FlaskClient, path: str):
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="ScaleLab control"'
    assert "DASHBOARD_PASSWORD" in response.get_data(as_text=True)


def test_off_loopback_the_right_password_opens_the_page(guarded: FlaskClient):
    assert guarded.get("/", headers=basic(PASSWORD_USER, PASSWORD)).status_code == 200
    assert guarded.get("/_dash-layout", headers=basic("scalelab", PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        basic("scalelab", "wrong"),
        basic("admin", PASSWORD),
        basic("scalelab", ""),
        {"Authorization": f"Bearer {PASSWORD}"},
        {"Authorization": "Basic !!not-base64!!"},
        {"Authorization": "Basic " + base64.b64encode(b"scalelab:\xff\xfe").decode()},  # not UTF-8
    ],
    ids=["wrong-password", "wrong-user", "empty-password", "not-basic", "not-base64", "not-utf8"],
)
def test_off_loopback_anything_but_the_right_password_is_refused(guarded: FlaskClient, headers: dict[str, str]):
    assert guarded.get("/", headers=headers).status_code == 401


def test_off_loopback_a_non_ascii_password_attempt_is_refused_not_an_error(guarded: FlaskClient):
    assert guarded.get("/", headers=basic("scalelab", "pässword")).status_code == 401


def test_a_non_ascii_password_can_be_used(make_lab: Callable[..., Lab]):
    client = create_app(make_lab(host="0.0.0.0", password="Passwört")).server.test_client()
    assert client.get("/", headers=basic("scalelab", "Passwört")).status_code == 200


def test_off_loopback_health_and_metrics_stay_open(guarded: FlaskClient):
    assert guarded.get("/health").status_code == 200
    assert guarded.get("/metrics").status_code == 200


# ------------------------------------------------------------------ everything from this server


def test_every_script_and_stylesheet_comes_from_this_server(page: FlaskClient):
    html = page.get("/").get_data(as_text=True)
    assets = ASSET.findall(html)
    assert any("dash_renderer" in asset for asset in assets)
    assert any("bootstrap" in asset and asset.split("?")[0].endswith(".css") for asset in assets)
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert "cdn" not in asset.lower(), asset
        with page.get(asset) as response:  # closes the served file
            assert response.status_code == 200, asset
            assert response.data, asset
    assert URL.findall(html) == []


def test_the_renderer_is_told_to_load_components_locally(page: FlaskClient):
    html = page.get("/").get_data(as_text=True)
    dash_config = json.loads(re.search(r'<script id="_dash-config"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert dash_config["serve_locally"] is True


@pytest.mark.parametrize("path", ["/_dash-layout", "/_dash-dependencies"])
def test_the_layout_and_callbacks_name_no_outside_address(page: FlaskClient, path: str):
    text = page.get(path).get_data(as_text=True)
    assert "cdn" not in text.lower()
    assert URL.findall(text) == []


# ------------------------------------------------------------------ wiring


def test_orchestrator_for_refuses_an_unknown_mode():
    with pytest.raises(OrchestratorError, match="SCALELAB_ORCHESTRATOR must be one of auto, local, docker") as caught:
        orchestrator_for(config(), environ={"SCALELAB_ORCHESTRATOR": "bogus"})
    assert "'bogus'" in str(caught.value)


def test_orchestrator_for_accepts_auto_as_the_cli_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # No local stack runs in the run directory and no Docker engine answers: the local one, which says so.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    orchestrator = orchestrator_for(config(run_dir=str(tmp_path)), environ={"SCALELAB_ORCHESTRATOR": "auto"})
    assert isinstance(orchestrator, LocalOrchestrator)
    assert orchestrator.run_dir == tmp_path.resolve()


def test_orchestrator_for_defaults_to_the_local_stack_in_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # no compose stack to find
    orchestrator = orchestrator_for(config(run_dir=str(tmp_path)), environ={})
    assert isinstance(orchestrator, LocalOrchestrator)
    assert orchestrator.run_dir == tmp_path.resolve()


def test_the_admin_token_comes_from_the_configuration_first(tmp_path: Path):
    token = admin_token_source(config(admin_token="from-env"), LocalOrchestrator(tmp_path))
    assert token() == "from-env"


def test_without_a_token_or_a_started_stack_the_admin_token_says_what_to_do(tmp_path: Path):
    token = admin_token_source(config(run_dir=str(tmp_path)), LocalOrchestrator(tmp_path))
    with pytest.raises(OrchestratorError, match="set SCALELAB_ADMIN_TOKEN or start the stack with `scalelab up`"):
        token()


UPDATE = "/_dash-update-component"


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8050", "127.0.0.1.evil.example", ""])
def test_a_name_that_is_not_the_pages_own_is_refused(page: FlaskClient, host: str):
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 reads nothing here.
    answer = page.get("/", headers={"Host": host})
    assert answer.status_code == 403
    assert "SCALELAB_ALLOWED_HOSTS" in answer.get_json()["error"]


@pytest.mark.parametrize("host", ["127.0.0.1:8050", "localhost:8050", "[::1]:8050", "dashboard:8050"])
def test_the_pages_own_names_are_served(page: FlaskClient, host: str):
    assert page.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    ("origin", "status"),
    [("http://evil.example", 403), ("null", 403), ("http://127.0.0.1:8050", 200), ("http://localhost:8050", 200)],
)
def test_a_press_from_another_site_is_refused(page: FlaskClient, origin: str, status: int):
    body = {
        "output": "action-sink.children",
        "outputs": {"id": "action-sink", "property": "children"},
        "inputs": [{"id": "load-stop", "property": "n_clicks", "value": 1}],
        "changedPropIds": ["load-stop.n_clicks"],
        "state": [],
    }
    answer = page.post(UPDATE, json=body, headers={"Host": "127.0.0.1:8050", "Origin": origin})
    assert (answer.status_code == 403) == (status == 403)


def test_a_lab_room_names_its_hosts(make_lab: Callable[..., Lab]):
    client = create_app(make_lab(host="0.0.0.0", password=PASSWORD, allowed_hosts=["lab.example"])).server.test_client()
    assert client.get("/health", headers={"Host": "lab.example:8050"}).status_code == 200
    assert client.get("/health", headers={"Host": "other.example:8050"}).status_code == 403


# ------------------------------------------------------------------ the autoscaler's route (scalelab autoscale)
def test_the_autoscaler_is_off_until_switched_on(page: FlaskClient):
    assert page.get("/autoscaler").get_json() == {"enabled": False, "policy": None, "decisions": []}


def test_switching_the_autoscaler_needs_the_admin_token(page: FlaskClient):
    refused = page.put("/autoscaler", json={"enabled": True})
    assert refused.status_code == 401 and "X-Admin-Token" in refused.get_json()["error"]
    assert page.put("/autoscaler", json={"enabled": True}, headers={"X-Admin-Token": "wrong"}).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([True], "send a JSON object"),
        ({"target": 1}, "send a JSON object"),
        ({"enabled": "yes"}, "enabled is true or false"),
        ({"enabled": True, "target": -1}, "target must be a number above 0"),
        ({"enabled": True, "service": "cache"}, "scales a service that scales"),
        ({"enabled": True, "speed": 3}, "unknown autoscaler setting"),
    ],
)
def test_a_bad_switch_is_400_saying_why(page: FlaskClient, body: Any, message: str):
    answer = page.put("/autoscaler", json=body, headers={"X-Admin-Token": "t"})
    assert answer.status_code == 400 and message in answer.get_json()["error"]
    assert page.get("/autoscaler").get_json()["enabled"] is False


def test_the_autoscaler_switches_on_with_its_policy_and_off_again(make_lab: Callable[..., Lab]):
    lab = make_lab(prometheus_url=f"http://127.0.0.1:{closed_port()}")
    page = create_app(lab).server.test_client()
    try:
        on = page.put("/autoscaler", json={"enabled": True, "target": 0.5, "max_instances": 5}, headers=ADMIN)
        assert on.status_code == 200
        status = on.get_json()
        assert status["enabled"] is True and status["policy"]["target"] == 0.5
        assert (
            status["describe"] == "microservice on in_flight, target 0.5 per instance, 3 to 5 instances, cool-down 3 s"
        )
        # Prometheus is not there: the loop changes nothing and says why.
        wait_for(lambda: "did not answer" in page.get("/autoscaler").get_json()["error"], timeout=5)
        off = page.put("/autoscaler", json={"enabled": False}, headers=ADMIN).get_json()
        assert off["enabled"] is False and off["policy"]["target"] == 0.5  # kept for the next switch-on
        assert [action.label for action in lab.actions.recent()] == [
            "autoscaler microservice on",
            "autoscaler microservice off",
        ]
    finally:
        lab.set_autoscaler(False)
