"""docker-compose.yml: current, in the Compose Specification format, and as the lab expects."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from scalelab.generate.compose import COMPOSE_FILE, COMPOSE_SECRETS, render
from scalelab.topology import lab_ports

PORTS = lab_ports()

REPO = COMPOSE_FILE.parent


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_committed_compose_file_is_what_the_generator_makes() -> None:
    assert COMPOSE_FILE.read_text() == render(), "run: python -m scalelab.generate.compose"


def test_services_are_the_instance_names_and_there_is_no_version_key() -> None:
    compose = _compose()
    assert "version" not in compose
    assert set(compose["services"]) == {*PORTS, "prometheus", "grafana", "loadgen", "dashboard"}


def test_only_entry_points_are_published_on_loopback() -> None:
    published = {name: service["ports"] for name, service in _compose()["services"].items() if service.get("ports")}
    assert published == {
        "load-balancer": ["127.0.0.1:8000:8000"],
        "cache": ["127.0.0.1:5004:5004"],
        "worker": ["127.0.0.1:5005:5005"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "grafana": ["127.0.0.1:3000:3000"],
        "loadgen": ["127.0.0.1:8089:8089"],
        "dashboard": ["127.0.0.1:8050:8050"],
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


def test_loadgen_runs_locust_on_the_lab_users_against_the_balancer() -> None:
    loadgen = _compose()["services"]["loadgen"]
    # The control image carries the control plane; the services' image only the services.
    assert loadgen["image"] == "scalelab/control:latest"
    assert loadgen["build"]["dockerfile"] == "dashboard/Dockerfile"
    command = loadgen["command"]
    assert command[:5] == ["python", "-m", "locust", "-f", "/app/scalelab/load/locustfile.py"]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {"--web-host": "0.0.0.0", "--web-port": "8089", "--host": "http://load-balancer:8000"}
    assert loadgen["depends_on"] == {"load-balancer": {"condition": "service_healthy"}}
    # The image's stdlib health check, pointed at Locust's page.
    assert loadgen["healthcheck"]["test"] == ["CMD", "python", "-m", "services.healthcheck"]
    assert loadgen["environment"]["SCALELAB_HEALTH_PORT"] == "8089"
    assert loadgen["environment"]["SCALELAB_HEALTH_PATH"] == "/"


def test_dashboard_controls_the_stack_through_the_docker_socket_inside_the_network() -> None:
    dashboard = _compose()["services"]["dashboard"]
    assert dashboard["command"] == ["python", "-m", "dashboard"]
    env = dashboard["environment"]
    assert env["SCALELAB_ORCHESTRATOR"] == "docker" and env["DASHBOARD_DOCKER_IN_NETWORK"] == "1"
    assert (env["DASHBOARD_HOST"], env["DASHBOARD_PORT"]) == ("0.0.0.0", "8050")
    # Secrets come from .env, never as literals in the file.
    assert env["DASHBOARD_PASSWORD"].startswith("${SCALELAB_DASHBOARD_PASSWORD:?")
    assert env["SCALELAB_ADMIN_TOKEN"].startswith("${SCALELAB_ADMIN_TOKEN:?")
    assert env["DASHBOARD_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert env["DASHBOARD_LOADGEN_URL"] == "http://loadgen:8089"
    assert env["DASHBOARD_GRAFANA_URL"] == "http://127.0.0.1:3000"
    assert env["DASHBOARD_GRAFANA_PROBE_URL"] == "http://grafana:3000"
    assert (env["SCALELAB_HEALTH_PORT"], env["SCALELAB_HEALTH_PATH"]) == ("8050", "/health")
    assert set(dashboard["depends_on"]) == {"load-balancer", "loadgen", "prometheus"}
    assert all(dep == {"condition": "service_healthy"} for dep in dashboard["depends_on"].values())


def test_only_the_dashboard_gets_the_docker_socket_and_runs_as_root_saying_why() -> None:
    services = _compose()["services"]
    with_socket = {
        name for name, service in services.items() if any("docker.sock" in v for v in service.get("volumes", []))
    }
    assert with_socket == {"dashboard"}
    # The socket, and ./results for the reports of the experiments it runs.
    assert services["dashboard"]["volumes"] == ["/var/run/docker.sock:/var/run/docker.sock", "./results:/app/results"]
    assert {name for name, service in services.items() if "user" in service} == {"dashboard"}
    assert services["dashboard"]["user"] == "root"
    text = COMPOSE_FILE.read_text()
    before = text[: text.index("    user: root")].splitlines()
    assert before[-1].strip().startswith("#") and "socket" in " ".join(before[-2:])


def test_data_lives_in_named_volumes() -> None:
    compose = _compose()
    assert set(compose["volumes"]) == {"database-data", "worker-data", "prometheus-data"}
    assert compose["services"]["database"]["volumes"] == ["database-data:/data"]
    assert compose["services"]["worker"]["volumes"] == ["worker-data:/data"]


def test_no_secret_is_committed_and_compose_refuses_to_start_without_one() -> None:
    # Every variable the compose file uses is a secret that must be set, with a message saying how.
    used = dict(re.findall(r"\$\{(\w+):\?([^}]*)\}", COMPOSE_FILE.read_text()))
    assert set(used) == set(COMPOSE_SECRETS)
    assert all("scalelab secrets" in message for message in used.values())
    assert "${" not in re.sub(r"\$\{\w+:\?[^}]*\}", "", COMPOSE_FILE.read_text())
    assert ".env" in (REPO / ".gitignore").read_text().split()
    grafana = _compose()["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${SCALELAB_GRAFANA_PASSWORD:?")


def test_scalelab_secrets_writes_fresh_ones_readable_by_the_owner_only(tmp_path: Path, capsys) -> None:
    from scalelab.cli.main import cli

    target = tmp_path / ".env"
    assert cli(["secrets", "--env-file", str(target)]) == 0
    env = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line and line[0] != "#")
    assert env["COMPOSE_PROJECT_NAME"] == "scalelab"
    assert set(COMPOSE_SECRETS) <= set(env) and all(len(env[name]) >= 32 for name in COMPOSE_SECRETS)
    assert target.stat().st_mode & 0o777 == 0o600
    again = tmp_path / "again.env"
    assert cli(["secrets", "--env-file", str(again)]) == 0
    assert again.read_text() != target.read_text()  # every run makes its own
    assert cli(["secrets", "--env-file", str(target)]) == 1  # never replaced by accident
    assert "scalelab secrets --force" in capsys.readouterr().err


def test_every_lab_container_has_the_catalogs_cpu_and_memory_limits() -> None:
    from scalelab import catalog
    from scalelab.catalog import service_of

    services = _compose()["services"]
    for name, spec in services.items():
        if service_of(name) not in {svc.name for svc in catalog.lab_services()}:
            continue
        svc = catalog.service(service_of(name))
        assert spec["cpus"] == svc.cpus and spec["mem_limit"] == f"{svc.memory_mb}m", name
    assert services["microservice-2"]["cpus"] == 0.5  # one microservice: half a core
