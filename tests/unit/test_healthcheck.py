"""The container health check probes the port and path the container names, and says why when it cannot."""

from __future__ import annotations

from services.healthcheck import target


def test_the_container_names_its_port_and_path() -> None:
    assert target({"SCALELAB_HEALTH_PORT": "8089", "SCALELAB_HEALTH_PATH": "/"}) == ("8089", "/")
    assert target({"SCALELAB_HEALTH_PORT": "8050"}) == ("8050", "/health")


def test_no_port_is_no_target() -> None:
    assert target({}) is None
    assert target({"SCALELAB_SERVICE": "gateway"}) is None
    assert target({"SCALELAB_HEALTH_PORT": "eighty"}) is None
