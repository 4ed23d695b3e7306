"""docker-compose.yml, generated from the catalog, as the local stack is.

Same instance names, ports and environment as ``scalelab up``; only the addresses differ
(compose service names instead of loopback). Two images: the services' (services/Dockerfile,
with only what the services need) and the control plane's (dashboard/Dockerfile: the load
engine and the control page). ``python -m scalelab.generate.compose`` rewrites the file; a
test checks the committed one is current.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from scalelab import catalog
from scalelab.paths import source_root, stack_file
from scalelab.topology import Secrets, container_host, instance_env, lab_ports, service_of

__all__ = [
    "COMPOSE_FILE",
    "COMPOSE_SECRETS",
    "CONTAINER_RESULTS",
    "CONTROL_CONTAINER",
    "PROJECT",
    "compose_dir",
    "compose_document",
    "published_ports",
    "render",
]

PROJECT = "scalelab"


def compose_dir() -> Path:
    """Return the folder of docker-compose.yml (the checkout's; installed, the current folder)."""
    return source_root() or Path.cwd()


COMPOSE_FILE = compose_dir() / "docker-compose.yml"
SERVICES_IMAGE = "scalelab/services:latest"
CONTROL_IMAGE = "scalelab/control:latest"
SERVICES_BUILD = {"context": ".", "dockerfile": "services/Dockerfile"}
CONTROL_BUILD = {"context": ".", "dockerfile": "dashboard/Dockerfile"}
# The control page's container carries the control plane: experiments and membership calls
# run there, inside the network.
CONTROL_CONTAINER = "dashboard"
CONTAINER_RESULTS = "/app/results"
CONTAINER_DATA = Path("/data")
LOCUSTFILE = "/app/scalelab/load/locustfile.py"
HEALTHCHECK = {"interval": "2s", "timeout": "3s", "retries": 3, "start_period": "15s"}
# The secrets `scalelab secrets` writes to .env. Compose refuses to start while one is unset:
# no usable secret is committed, and no known default can slip through.
COMPOSE_SECRETS = (
    "SCALELAB_JWT_SECRET",
    "SCALELAB_ADMIN_TOKEN",
    "SCALELAB_DASHBOARD_PASSWORD",
    "SCALELAB_GRAFANA_PASSWORD",
)
MISSING_SECRET = "run `scalelab secrets` first: it writes fresh secrets to .env"


def _secret(name: str) -> str:
    return f"${{{name}:?{MISSING_SECRET}}}"


SECRETS = Secrets(jwt_secret=_secret("SCALELAB_JWT_SECRET"), admin_token=_secret("SCALELAB_ADMIN_TOKEN"))
DASHBOARD_PASSWORD = _secret("SCALELAB_DASHBOARD_PASSWORD")
DOCKER_SOCKET = "/var/run/docker.sock"
ROOT_USER = "    user: root\n"
ROOT_USER_WHY = (
    "    # root: the mounted Docker socket is root:docker on the host, and the docker group's id\n"
    "    # differs from machine to machine, so no fixed unprivileged user can be given access.\n"
)


def published_ports() -> dict[str, int]:
    """Return ``instance -> port`` of the instances reachable from the host (on loopback only)."""
    return {svc.name: svc.ports[0] for svc in catalog.SERVICES if svc.published}


def _url(service: str) -> str:
    return f"http://{service}:{catalog.service(service).ports[0]}"


def _ports(name: str) -> list[str]:
    port = published_ports().get(name)
    return [f"127.0.0.1:{port}:{port}"] if port else []


def python_healthcheck() -> dict[str, Any]:
    """Return the health check the lab's images run: ``python -m services.healthcheck``."""
    return {"test": ["CMD", "python", "-m", "services.healthcheck"], **HEALTHCHECK}


def _depends(svc: catalog.Service) -> dict[str, Any]:
    """Return depends_on: every instance of each dependency, healthy."""
    names = [
        instance for dependency in svc.depends_on for instance in catalog.instance_names(catalog.service(dependency))
    ]
    return {name: {"condition": "service_healthy"} for name in names}


def bind_mount(volume: str) -> tuple[Path, str] | None:
    """Return ``(stack file, path in the container)`` of a bind mount from the checkout (``./x:/y:ro``), else None."""
    source, _, rest = volume.partition(":")
    if not source.startswith("./"):
        return None
    return stack_file(*PurePosixPath(source).parts), rest.partition(":")[0]


def limits(svc: catalog.Service) -> dict[str, Any]:
    """Return a container's CPU and memory limits from the catalog (none for a service that names none).

    Services and the load engine also get fewer CPU shares than the page and Prometheus, so that a
    press is answered while the load takes every core (catalog.Service.yields_cpu).
    """
    out: dict[str, Any] = {}
    if svc.yields_cpu:
        out["cpu_shares"] = catalog.YIELDING_CPU_SHARES
    if svc.cpus is not None:
        out["cpus"] = svc.cpus
    if svc.memory_mb is not None:
        out["mem_limit"] = f"{svc.memory_mb}m"
    return out


def _lab_service(name: str, port: int, ports: dict[str, int]) -> dict[str, Any]:
    svc = catalog.service(service_of(name))
    env = instance_env(name, port, ports, SECRETS, CONTAINER_DATA, host=container_host)
    env["SCALELAB_HEALTH_PORT"] = str(port)
    env["SCALELAB_HEALTH_PATH"] = svc.health_path
    spec: dict[str, Any] = {
        "build": dict(SERVICES_BUILD),  # a copy: a shared dict would come out as a YAML alias
        "image": SERVICES_IMAGE,
        "environment": dict(sorted(env.items())),
        "healthcheck": python_healthcheck(),
    }
    spec.update(limits(svc))
    if svc.depends_on:
        spec["depends_on"] = _depends(svc)
    if svc.data_files:
        spec["volumes"] = [f"{svc.name}-data:{CONTAINER_DATA}"]
    if _ports(name):
        spec["ports"] = _ports(name)
    return spec


def loadgen_command(port: int, entry_url: str) -> list[str]:
    """Return the load engine's command in a container: Locust with the lab's users, sending to ``entry_url``."""
    return [
        "python", "-m", "locust", "-f", LOCUSTFILE,
        "--web-host", "0.0.0.0", "--web-port", str(port), "--host", entry_url,
    ]  # fmt: skip


def _loadgen_service(svc: catalog.Service) -> dict[str, Any]:
    """Return the load engine: Locust with the lab's users, sending to the entry, idle until told to swarm."""
    port = svc.ports[0]
    return {
        "build": dict(CONTROL_BUILD),
        "image": CONTROL_IMAGE,
        "command": loadgen_command(port, _url(catalog.entry().name)),
        "environment": {
            "SCALELAB_INSTANCE": svc.name,
            # No lab service here: the health check probes Locust's own page.
            "SCALELAB_HEALTH_PORT": str(port),
            "SCALELAB_HEALTH_PATH": svc.health_path,
        },
        "ports": _ports(svc.name),
        "depends_on": _depends(svc),
        "healthcheck": python_healthcheck(),
    }


def _prometheus_service(svc: catalog.Service) -> dict[str, Any]:
    port = svc.ports[0]
    ready = f"http://127.0.0.1:{port}{svc.health_path}"
    return {
        "image": "prom/prometheus:latest",
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=:{port}",
        ],
        "volumes": ["./prometheus:/etc/prometheus:ro", "prometheus-data:/prometheus"],
        "ports": _ports(svc.name),
        "healthcheck": {
            # busybox wget in the official image, curl in Debian-based ones
            "test": ["CMD-SHELL", f"wget -qO- {ready} || curl -fs {ready}"],
            **HEALTHCHECK,
        },
    }


def grafana_environment(svc: catalog.Service) -> dict[str, str]:
    """Return Grafana's environment: its port, and its admin password from the secrets."""
    return {
        "GF_SERVER_HTTP_PORT": str(svc.ports[0]),
        "GF_SECURITY_ADMIN_PASSWORD": _secret("SCALELAB_GRAFANA_PASSWORD"),
    }


def _grafana_service(svc: catalog.Service) -> dict[str, Any]:
    port = svc.ports[0]
    return {
        "image": "grafana/grafana:latest",
        "environment": grafana_environment(svc),
        "volumes": [
            "./grafana/grafana.ini:/etc/grafana/grafana.ini:ro",
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards:ro",
        ],
        "ports": _ports(svc.name),
        "depends_on": _depends(svc),
        "healthcheck": {
            "test": ["CMD-SHELL", f"wget -qO- http://127.0.0.1:{port}{svc.health_path} || exit 1"],
            **HEALTHCHECK,
        },
    }


def _dashboard_service(svc: catalog.Service) -> dict[str, Any]:
    """Return the control page, which drives the stack's containers through the Docker socket."""
    port = svc.ports[0]
    grafana = catalog.service("grafana").ports[0]
    env = {
        "SCALELAB_INSTANCE": svc.name,
        "SCALELAB_ORCHESTRATOR": "docker",
        # Inside the network: reach every container by its service name, not via loopback.
        "DASHBOARD_DOCKER_IN_NETWORK": "1",
        "DASHBOARD_HOST": "0.0.0.0",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
        "SCALELAB_ADMIN_TOKEN": SECRETS.admin_token,
        **{variable: _url(target) for variable, target in svc.links.items()},
        # The browser opens Grafana on the published port; the app checks it inside the network.
        "DASHBOARD_GRAFANA_URL": f"http://127.0.0.1:{grafana}",
        "DASHBOARD_GRAFANA_PROBE_URL": _url("grafana"),
        "SCALELAB_HEALTH_PORT": str(port),
        "SCALELAB_HEALTH_PATH": svc.health_path,
        "DASHBOARD_RESULTS_DIR": CONTAINER_RESULTS,
    }
    return {
        "build": dict(CONTROL_BUILD),
        "image": CONTROL_IMAGE,
        "command": ["python", "-m", "dashboard"],
        "user": "root",  # render() says why, in the file
        "environment": env,
        # Experiments run here (from the page, or `scalelab experiment` on the host); their
        # reports land in ./results beside the compose file.
        "volumes": [f"{DOCKER_SOCKET}:{DOCKER_SOCKET}", f"./results:{CONTAINER_RESULTS}"],
        "ports": _ports(svc.name),
        "depends_on": _depends(svc),
        "healthcheck": python_healthcheck(),
    }


HELPERS = {
    "loadgen": _loadgen_service,
    "prometheus": _prometheus_service,
    "grafana": _grafana_service,
    "dashboard": _dashboard_service,
}


def compose_document() -> dict[str, Any]:
    """Return docker-compose.yml as a dict (Compose Specification: no `version:` key)."""
    ports = lab_ports()
    services: dict[str, Any] = {}
    for svc in catalog.SERVICES:
        if svc.runs == "service":
            for name in catalog.instance_names(svc):
                services[name] = _lab_service(name, ports[name], ports)
        else:
            services[svc.name] = HELPERS[svc.runs](svc)
    volumes = [f"{svc.name}-data" for svc in catalog.SERVICES if svc.data_files]
    return {"services": services, "volumes": {volume: {} for volume in [*volumes, "prometheus-data"]}}


def render() -> str:
    """Return the text of docker-compose.yml."""
    entry = catalog.entry()
    header = (
        "# ScaleLab in containers: scalelab secrets (once), then docker compose up --build\n"
        f"# (then open http://127.0.0.1:{entry.ports[0]}/token). The secrets live in .env, which is never committed.\n"
        "# Generated by scalelab/generate/compose.py from the catalog (scalelab/catalog.py), as `scalelab up`\n"
        "# is; edit those and run `python -m scalelab.generate.compose`. No restart policy: a kill\n"
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
