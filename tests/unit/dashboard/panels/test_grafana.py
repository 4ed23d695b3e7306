"""The Grafana panel: the overview's panels embedded by id while Grafana answers, else where it looked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dash import Dash
from prometheus_client import CollectorRegistry

from dashboard.callbacks import register as register_panels
from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from dashboard.panels import grafana
from scalelab import paths
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config
from tests.unit.standins import CannedServer, closed_port

from .support import Callbacks, ids, text


def _lab(tmp_path: Path, grafana_url: str) -> Lab:
    config = load_config(DashboardConfig, {"run_dir": str(tmp_path), "grafana_url": grafana_url}, environ={})
    return Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())


def test_the_dashboard_is_the_shipped_stack_file():
    assert grafana.dashboard_file() == paths.stack_file("grafana", "dashboards", "scalelab-overview.json")


def test_every_embedded_panel_is_in_the_generated_dashboard():
    ids_ = {p["title"]: p["id"] for p in json.loads(grafana.dashboard_file().read_text())["panels"]}
    assert grafana.panel_ids() == [(ids_[title], title) for title in grafana.PANEL_TITLES]


def test_an_unreadable_dashboard_embeds_nothing(tmp_path: Path):
    assert grafana.panel_ids(tmp_path / "missing.json") == []
    (tmp_path / "broken.json").write_text("{")
    assert grafana.panel_ids(tmp_path / "broken.json") == []


def test_the_card_holds_the_panels():
    assert ids(grafana.card()) == ["grafana"]


def test_grafana_panels_are_embedded_by_id_when_grafana_answers(tmp_path: Path, server: CannedServer) -> None:
    server.json("GET", "/api/health", {"database": "ok"})
    lab = _lab(tmp_path, server.url)
    assert lab._grafana_reachable() is True
    panels = grafana.panel_ids()
    rendered = text(grafana.embedded(lab, True, panels))
    for panel_id, _title in panels:
        assert f"{server.url}/d-solo/scalelab-overview/scalelab?orgId=1&panelId={panel_id}&" in rendered
    assert f"{server.url}/d/scalelab-overview" in rendered


def test_without_grafana_the_page_says_where_it_looked(tmp_path: Path) -> None:
    lab = _lab(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert lab._grafana_reachable() is False
    rendered = text(grafana.embedded(lab, False, grafana.panel_ids()))
    assert "Grafana is not reachable at http://127.0.0.1:" in rendered and "iframe" not in rendered.lower()


@pytest.mark.parametrize("reachable", [True, False])
def test_each_interval_the_panel_follows_whether_grafana_answers(app: Dash, lab: Lab, reachable: bool):
    lab.status.grafana = reachable
    register_panels(app, lab, [grafana])
    shown = text(Callbacks(app).fire("tick", "n_intervals", 1))
    assert ("Iframe" in shown) is reachable
