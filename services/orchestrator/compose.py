"""docker-compose.yml, generated from the same topology as the local stack.

Same instance names, ports and environment as ``scalelab up``; only the addresses differ
(compose service names instead of loopback). ``python -m services.orchestrator.compose``
rewrites the file; a test checks the committed one is current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .topology import (
    DASHBOARD_PORT,
    LOADGEN_PORT,
    PORTS,
    PROMETHEUS_PORT,
    START_ORDER,
    Secrets,
    container_host,
    instance_env,
    service_of,
)

__all__ = ["COMPOSE_FILE", "PROJECT", "PUBLISHED", "compose_document", "render"]

PROJECT = "scalelab"
COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
IMAGE = "scalelab/services:latest"
GRAFANA_PORT = 3000
# Only the entry points are published, and on loopback only.
PUBLISHED = {
    "load-balancer": PORTS["load-balancer"],
    "cache": PORTS["cache"],
    "worker": PORTS["worker"],
    "prometheus": PROMETHEUS_PORT,
    "grafana": GRAFANA_PORT,
    "loadgen": LOADGEN_PORT,
    "dashboard": DASHBOARD_PORT,
}
BUILD = {"context": ".", "dockerfile": "services/Dockerfile"}
VOLUMES = {"database": "database-data", "worker": "worker-data"}
# What each service calls, so compose starts it after those are healthy.
DEPENDS = {
    "gateway": ("cache", "database", "worker", "microservice"),
    "load-balancer": ("gateway",),
}
HEALTHCHECK = {"interval": "2s", "timeout": "3s", "retries": 3, "start_period": "15s"}
# Compose fills these from .env (or the shell); the services never see a literal default.
SECRETS = Secrets(jwt_secret="${SCALELAB_JWT_SECRET}", admin_token="${SCALELAB_ADMIN_TOKEN}")
DASHBOARD_PASSWORD = "${SCALELAB_DASHBOARD_PASSWORD}"
DOCKER_SOCKET = "/var/run/docker.sock"
ROOT_USER = "    user: root\n"
ROOT_USER_WHY = (
    "    # root: the mounted Docker socket is root:docker on the host, and the docker group's id\n"
    "    # differs from machine to machine, so no fixed unprivileged user can be given access.\n"
)


def _ports(name: str) -> list[str]:
    port = PUBLISHED.get(name)
    return [f"127.0.0.1:{port}:{port}"] if port else []


def _healthcheck() -> dict[str, Any]:
    return {"test": ["CMD", "python", "-m", "services.healthcheck"], **HEALTHCHECK}


def _healthy(*names: str) -> dict[str, Any]:
    return {name: {"condition": "service_healthy"} for name in names}


def _python_service(name: str) -> dict[str, Any]:
    service = service_of(name)
    env = instance_env(name, PORTS[name], PORTS, SECRETS, Path("/data"), host=container_host)
    spec: dict[str, Any] = {
        "build": dict(BUILD),  # a copy: a shared dict would come out as a YAML alias
        "image": IMAGE,
        "environment": dict(sorted(env.items())),
        "healthcheck": _healthcheck(),
    }
    dependencies = [other for other in PORTS if service_of(other) in DEPENDS.get(service, ())]
    if dependencies:
        spec["depends_on"] = _healthy(*dependencies)
    if service in VOLUMES:
        spec["volumes"] = [f"{VOLUMES[service]}:/data"]
    if _ports(name):
        spec["ports"] = _ports(name)
    return spec


def _loadgen_service() -> dict[str, Any]:
    """Return the load engine: Locust with the lab's users, sending to the balancer, idle until told to swarm."""
    balancer = f"http://load-balancer:{PORTS['load-balancer']}"
    command = [
        "python", "-m", "locust", "-f", "/app/dashboard/loadgen/locustfile.py",
        "--web-host", "0.0.0.0", "--web-port", str(LOADGEN_PORT), "--host", balancer,
    ]  # fmt: skip
    return {
        "build": dict(BUILD),  # a copy: a shared dict would come out as a YAML alias
        "image": IMAGE,
        "command": command,
        "environment": {
            "SCALELAB_INSTANCE": "loadgen",
            # No lab service here: the health check probes Locust's own page.
            "SCALELAB_HEALTH_PORT": str(LOADGEN_PORT),
            "SCALELAB_HEALTH_PATH": "/",
        },
        "ports": _ports("loadgen"),
        "depends_on": _healthy("load-balancer"),
        "healthcheck": _healthcheck(),
    }


CONTAINER_RESULTS = "/app/results"


def _dashboard_service() -> dict[str, Any]:
    """Return the control app, which drives the stack's containers through the Docker socket."""
    env = {
        "SCALELAB_INSTANCE": "dashboard",
        "SCALELAB_ORCHESTRATOR": "docker",
        # Inside the network: reach every container by its service name, not via loopback.
        "DASHBOARD_DOCKER_IN_NETWORK": "1",
        "DASHBOARD_HOST": "0.0.0.0",
        "DASHBOARD_PORT": str(DASHBOARD_PORT),
        "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
        "SCALELAB_ADMIN_TOKEN": SECRETS.admin_token,
        "DASHBOARD_PROMETHEUS_URL": f"http://prometheus:{PROMETHEUS_PORT}",
        "DASHBOARD_LOADGEN_URL": f"http://loadgen:{LOADGEN_PORT}",
        # The browser opens Grafana on the published port; the app checks it inside the network.
        "DASHBOARD_GRAFANA_URL": f"http://127.0.0.1:{GRAFANA_PORT}",
        "DASHBOARD_GRAFANA_PROBE_URL": f"http://grafana:{GRAFANA_PORT}",
        "SCALELAB_HEALTH_PORT": str(DASHBOARD_PORT),
        "SCALELAB_HEALTH_PATH": "/health",
        "DASHBOARD_RESULTS_DIR": CONTAINER_RESULTS,
    }
    return {
        "build": dict(BUILD),  # a copy: a shared dict would come out as a YAML alias
        "image": IMAGE,
        "command": ["python", "-m", "dashboard"],
        "user": "root",  # render() says why, in the file
        "environment": env,
        # Experiments run here (from the page, or `scalelab experiment` on the host); their
        # reports land in ./results beside the compose file.
        "volumes": [f"{DOCKER_SOCKET}:{DOCKER_SOCKET}", f"./results:{CONTAINER_RESULTS}"],
        "ports": _ports("dashboard"),
        "depends_on": _healthy("load-balancer", "loadgen", "prometheus"),
        "healthcheck": _healthcheck(),
    }


def compose_document() -> dict[str, Any]:
    """Return docker-compose.yml as a dict (Compose Specification: no `version:` key)."""
    names = sorted(PORTS, key=lambda n: (START_ORDER.index(service_of(n)), n))
    services: dict[str, Any] = {name: _python_service(name) for name in names}
    services["loadgen"] = _loadgen_service()
    ready = f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready"
    services["prometheus"] = {
        "image": "prom/prometheus:latest",
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=2d",
        ],
        "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
        "ports": _ports("prometheus"),
        "healthcheck": {
            # busybox wget in the official image, curl in Debian-based ones
            "test": ["CMD-SHELL", f"wget -qO- {ready} || curl -fs {ready}"],
            **HEALTHCHECK,
        },
    }
    services["grafana"] = {
        "image": "grafana/grafana:latest",
        "volumes": [
            "./grafana/grafana.ini:/etc/grafana/grafana.ini:ro",
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
        ],
        "ports": _ports("grafana"),
        "depends_on": {"prometheus": {"condition": "service_healthy"}},
        "healthcheck": {
            "test": ["CMD-SHELL", f"wget -qO- http://127.0.0.1:{GRAFANA_PORT}/api/health || exit 1"],
            **HEALTHCHECK,
        },
    }
    services["dashboard"] = _dashboard_service()
    return {
        "services": services,
        "volumes": {volume: {} for volume in [*VOLUMES.values(), "prometheus-data"]},
    }


def render() -> str:
    """Return the text of docker-compose.yml."""
    header = (
        "# ScaleLab in containers: docker compose up --build   (then open http://127.0.0.1:8000/token)\n"
        "# Generated by services/orchestrator/compose.py from the same topology as `scalelab up`;\n"
        "# edit that and run `python -m services.orchestrator.compose`. No restart policy: a kill\n"
        "# you ask for stays a kill.\n"
    )
    text = yaml.safe_dump(compose_document(), sort_keys=False, width=120)
    # YAML comments cannot be dumped, so the one the root user needs goes in here.
    if text.count(ROOT_USER) != 1:
        raise ValueError("exactly one service, the dashboard, should run as root")
    return header + text.replace(ROOT_USER, ROOT_USER_WHY + ROOT_USER)


if __name__ == "__main__":
    COMPOSE_FILE.write_text(render())
    print(f"wrote {COMPOSE_FILE}")
