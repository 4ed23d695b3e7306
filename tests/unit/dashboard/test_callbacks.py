"""Renderers of the page's refresh callbacks: Grafana panels when it answers, the failover table."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import CollectorRegistry

from dashboard.callbacks import GRAFANA_DASHBOARD, GRAFANA_PANELS, _grafana, _grafana_panels
from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from services.kit.config import load_config
from services.orchestrator.local import LocalOrchestrator

from .support import CannedServer, closed_port


def _lab(tmp_path: Path, grafana: str) -> Lab:
    config = load_config(DashboardConfig, {"run_dir": str(tmp_path), "grafana_url": grafana}, environ={})
    return Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())


def test_grafana_panels_are_embedded_by_id_when_grafana_answers(tmp_path: Path, server: CannedServer) -> None:
    server.json("GET", "/api/health", {"database": "ok"})
    lab = _lab(tmp_path, server.url)
    assert lab._grafana_reachable() is True
    panels = _grafana_panels(lab)
    ids = {p["title"]: p["id"] for p in json.loads(GRAFANA_DASHBOARD.read_text())["panels"]}
    assert panels == [(ids[title], title) for title in GRAFANA_PANELS]
    rendered = json.dumps(_grafana(lab, True, panels), default=lambda component: component.to_plotly_json())
    for panel_id, _title in panels:
        assert f"{server.url}/d-solo/scalelab-overview/scalelab?orgId=1&panelId={panel_id}&" in rendered
    assert f"{server.url}/d/scalelab-overview" in rendered


def test_without_grafana_the_page_says_where_it_looked(tmp_path: Path) -> None:
    lab = _lab(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert lab._grafana_reachable() is False
    rendered = json.dumps(_grafana(lab, False, _grafana_panels(lab)), default=lambda c: c.to_plotly_json())
    assert "Grafana is not reachable at http://127.0.0.1:" in rendered and "iframe" not in rendered.lower()
