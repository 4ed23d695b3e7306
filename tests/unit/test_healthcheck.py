"""The container health check knows every service's port variable."""

from __future__ import annotations

from services.__main__ import SERVICES, config_class_of
from services.healthcheck import PORT_VARIABLES
from services.kit.config import describe_config


def test_every_service_has_its_port_variable() -> None:
    assert set(PORT_VARIABLES) == set(SERVICES)
    for service, variable in PORT_VARIABLES.items():
        variables = [env for env, _default, _doc in describe_config(config_class_of(service))]
        assert variable in variables, (service, variable)
