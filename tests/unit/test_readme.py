"""The README is the user's guide: its set-up commands and its settings table must stay true."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.config import DashboardConfig
from services.balancer.config import BalancerConfig
from services.cache.config import CacheConfig
from services.database.config import DatabaseConfig
from services.gateway.config import GatewayConfig
from services.kit.config import describe_config
from services.microservice.config import MicroserviceConfig
from services.worker.config import WorkerConfig

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIGS = (
    BalancerConfig,
    GatewayConfig,
    CacheConfig,
    DatabaseConfig,
    MicroserviceConfig,
    WorkerConfig,
    DashboardConfig,
)


def test_readme_opens_with_the_two_setup_commands() -> None:
    head = README.read_text().splitlines()[:15]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.__name__)
def test_readme_documents_every_setting_with_its_default(config: type) -> None:
    text = README.read_text()
    for env, default, _doc in describe_config(config):
        if not env:
            continue
        rows = [line for line in text.splitlines() if line.startswith(f"| `{env}` |")]
        assert rows, f"README does not document {env}"
        shown = ", ".join(default) if isinstance(default, list) else str(default)
        assert (f"`{shown}`" in rows[0]) or (shown == "" and "(empty)" in rows[0]), (env, rows[0])
