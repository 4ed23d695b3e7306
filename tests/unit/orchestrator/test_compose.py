"""docker-compose.yml: current, in the Compose Specification format, and as the lab expects."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from services.orchestrator.compose import COMPOSE_FILE, render
from services.orchestrator.topology import PORTS

REPO = COMPOSE_FILE.parent


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_committed_compose_file_is_what_the_generator_makes() -> None:
    assert COMPOSE_FILE.read_text() == render(), "run: python -m services.orchestrator.compose"


def test_services_are_the_instance_names_and_there_is_no_version_key() -> None:
    compose = _compose()
    assert "version" not in compose
    assert set(compose["services"]) == {*PORTS, "prometheus", "grafana"}


def test_only_entry_points_are_published_on_loopback() -> None:
    published = {name: service["ports"] for name, service in _compose()["services"].items() if service.get("ports")}
    assert published == {
        "load-balancer": ["127.0.0.1:8000:8000"],
        "cache": ["127.0.0.1:5004:5004"],
        "worker": ["127.0.0.1:5005:5005"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "grafana": ["127.0.0.1:3000:3000"],
    }


def test_no_restart_policy_undoes_a_kill_and_dependencies_wait_for_health() -> None:
    services = _compose()["services"]
    assert all("restart" not in service for service in services.values())
    assert all("healthcheck" in service for service in services.values())
    gateway = services["gateway-2"]
    assert set(gateway["depends_on"]) == {
        "cache",
        "database",
        "worker",
        "microservice-1",
        "microservice-2",
        "microservice-3",
    }
    assert all(dep == {"condition": "service_healthy"} for dep in gateway["depends_on"].values())
    assert services["load-balancer"]["environment"]["BALANCER_BACKENDS"] == (
        "gateway-1=http://gateway-1:5000,gateway-2=http://gateway-2:5003"
    )


def test_data_lives_in_named_volumes() -> None:
    compose = _compose()
    assert set(compose["volumes"]) == {"database-data", "worker-data", "prometheus-data"}
    assert compose["services"]["database"]["volumes"] == ["database-data:/data"]
    assert compose["services"]["worker"]["volumes"] == ["worker-data:/data"]


def test_project_is_named_in_env_file() -> None:
    env = dict(
        line.split("=", 1) for line in (REPO / ".env").read_text().splitlines() if "=" in line and line[0] != "#"
    )
    assert env["COMPOSE_PROJECT_NAME"] == "scalelab"
    assert env["SCALELAB_JWT_SECRET"] and env["SCALELAB_ADMIN_TOKEN"]


def test_image_requirements_match_the_package_dependencies() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = Path(REPO / "services" / "requirements.txt").read_text().splitlines()
    required = [line for line in lines if line and not line.startswith("#")]
    assert sorted(required, key=str.lower) == sorted(declared, key=str.lower)
