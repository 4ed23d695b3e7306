"""The page: every id the browser tests and users rely on, each once, in the page's order."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dashboard.charts import CHARTS
from dashboard.config import DashboardConfig
from dashboard.lab import KNOBS, Lab
from dashboard.layout import page
from scalelab import catalog
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config

from .panels.support import ids

# The ids the browser tests, the benchmarks and the docs use.
FIXED = [
    "grafana-link",
    "source-banner",
    "action-banner",
    "topology",
    "load-users",
    "load-rate",
    "load-duration",
    "load-hot-keys",
    "load-start",
    "load-stop",
    "load-status",
    "window",
    "failover-table",
    "action-log",
    "experiment-name",
    "experiment-run",
    "experiment-progress",
    "experiment-message",
    "experiment-results",
    "grafana",
    "refresh-timing",
    "tick",
    "instance-names",
    "action-sink",
]


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A Lab over an empty local stack; its sampler is never started."""
    config = load_config(DashboardConfig, {"run_dir": str(tmp_path)}, environ={})
    return Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())


def test_the_page_has_every_fixed_id_once_in_its_order(lab: Lab):
    shown = [i for i in ids(page(lab)) if isinstance(i, str)]
    assert len(shown) == len(set(shown)), "an id is used twice"
    assert [i for i in shown if i in FIXED] == FIXED


def test_the_page_has_every_chart_and_knob(lab: Lab):
    shown = {i for i in ids(page(lab)) if isinstance(i, str)}
    assert {f"chart-{chart.id}" for chart in CHARTS} <= shown
    assert {f"knob-{key}" for key in KNOBS} <= shown
    assert {"chart-split-gateways", "chart-split-microservices"} <= shown
    assert {"knob-gateway__cache_enabled", "apply-database__latency_ms", "knob-instance-microservice"} <= shown


def test_the_page_offers_scaling_for_each_service_that_scales(lab: Lab):
    scaled = {i["service"] for i in ids(page(lab)) if isinstance(i, dict) and i.get("type") == "scale"}
    assert scaled == set(catalog.scalable())


def test_the_tick_follows_the_configured_refresh(lab: Lab):
    tick = next(c for c in page(lab).children if getattr(c, "id", None) == "tick")
    assert tick.interval == int(lab.config.refresh_seconds * 1000)
