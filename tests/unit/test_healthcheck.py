"""The container health check knows every service's port variable, or the port it is given."""

from __future__ import annotations

from services.__main__ import SERVICES, config_class_of
from services.healthcheck import PORT_VARIABLES, target
from services.kit.config import describe_config


def test_every_service_has_its_port_variable() -> None:
    assert set(PORT_VARIABLES) == set(SERVICES)
    for service, variable in PORT_VARIABLES.items():
        variables = [env for env, _default, _doc in describe_config(config_class_of(service))]
        assert variable in variables, (service, variable)


def test_a_service_is_probed_on_its_port_variable_at_health() -> None:
    assert target({"SCALELAB_SERVICE": "gateway", "GATEWAY_PORT": "5003"}) == ("5003", "/health")


def test_a_container_without_a_lab_service_names_its_port_and_path() -> None:
    assert target({"SCALELAB_HEALTH_PORT": "8089", "SCALELAB_HEALTH_PATH": "/"}) == ("8089", "/")
    assert target({"SCALELAB_HEALTH_PORT": "8050"}) == ("8050", "/health")


def test_no_port_is_no_target() -> None:
    assert target({}) is None
    assert target({"SCALELAB_SERVICE": "gateway"}) is None
    assert target({"SCALELAB_HEALTH_PORT": "eighty"}) is None
