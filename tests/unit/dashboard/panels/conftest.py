"""Fixtures of the panels' tests: a Lab over an empty local stack (never started) and a bare Dash app."""

from __future__ import annotations

from pathlib import Path

import pytest
from dash import Dash, html
from prometheus_client import CollectorRegistry

from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from scalelab.orchestrators.local import LocalOrchestrator
from services.kit.config import load_config


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A Lab over an empty local stack with a fresh registry; its sampler is never started."""
    config = load_config(DashboardConfig, {"run_dir": str(tmp_path)}, environ={})
    return Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())


@pytest.fixture
def app() -> Dash:
    """A Dash app with no layout, for one panel's callbacks (its components are drawn by the test)."""
    app = Dash(__name__, suppress_callback_exceptions=True)
    app.layout = html.Div()  # Dash serves nothing without one; the callbacks do not need the real page
    return app
