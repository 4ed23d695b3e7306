"""The control app's configuration: defaults, a password off loopback, Grafana's probe address."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard.config import DashboardConfig
from services.kit.config import ConfigError, load_config


def config(environ: dict[str, str] | None = None, **overrides: Any) -> DashboardConfig:
    """Return the configuration from ``overrides`` and ``environ`` only (never this process's environment)."""
    return load_config(DashboardConfig, overrides, environ=environ or {})


def test_defaults_serve_on_loopback_without_a_password():
    default = config()
    assert (default.host, default.port, default.password) == ("127.0.0.1", 8050, "")
    assert not default.needs_password


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_a_non_loopback_host_without_a_password_is_refused(host):
    with pytest.raises(ConfigError, match="DASHBOARD_PASSWORD") as caught:
        config(host=host)
    assert f"DASHBOARD_HOST={host}" in str(caught.value)


def test_a_non_loopback_host_from_the_environment_needs_a_password_too():
    with pytest.raises(ConfigError, match="DASHBOARD_PASSWORD"):
        config({"DASHBOARD_HOST": "0.0.0.0"})
    served = config({"DASHBOARD_HOST": "0.0.0.0", "DASHBOARD_PASSWORD": "s3cret"})
    assert served.needs_password
    assert served.password == "s3cret"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_password(host):
    assert not config(host=host).needs_password


def test_a_password_on_loopback_is_accepted_but_not_asked_for():
    assert not config(password="s3cret").needs_password


def test_grafana_probe_url_defaults_to_grafana_url():
    assert config().grafana_probe_url == "http://127.0.0.1:3000"
    assert config({"DASHBOARD_GRAFANA_URL": "http://grafana.example:3000"}).grafana_probe_url == (
        "http://grafana.example:3000"
    )


def test_grafana_probe_url_can_differ_from_what_the_browser_uses():
    both = config(grafana_url="http://127.0.0.1:3000", grafana_probe_url="http://grafana:3000")
    assert (both.grafana_url, both.grafana_probe_url) == ("http://127.0.0.1:3000", "http://grafana:3000")


@pytest.mark.parametrize("seconds", ["0.1", "61"])
def test_refresh_must_be_between_a_fifth_of_a_second_and_a_minute(seconds):
    with pytest.raises(ConfigError, match="DASHBOARD_REFRESH_SECONDS"):
        config({"DASHBOARD_REFRESH_SECONDS": seconds})


def test_settings_are_parsed_from_the_environment():
    parsed = config({"DASHBOARD_PORT": "9050", "DASHBOARD_DOCKER_IN_NETWORK": "yes", "DASHBOARD_REFRESH_SECONDS": "2"})
    assert (parsed.port, parsed.docker_in_network, parsed.refresh_seconds) == (9050, True, 2.0)
