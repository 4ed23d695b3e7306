"""The stack's instances: names, ports and the environment each one starts with, from the catalog.

Every mode (local processes, compose) builds its instances here, so they share names, ports
and settings; only the addresses differ (loopback locally, service names in compose).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scalelab import catalog
from scalelab.catalog import EXTRA_PORT_BASE, index_of, service_of

__all__ = [
    "EXTRA_PORT_BASE",
    "InstanceSpec",
    "Secrets",
    "container_host",
    "dashboard_spec",
    "default_topology",
    "helper_port",
    "index_of",
    "instance_env",
    "lab_ports",
    "loadgen_spec",
    "local_host",
    "prometheus_spec",
    "service_of",
    "start_order",
]

LOADGEN_LOCUSTFILE = Path(__file__).resolve().parent / "load" / "locustfile.py"


@dataclass(frozen=True)
class Secrets:
    """The JWT secret every gateway shares and the admin token every control API checks."""

    jwt_secret: str
    admin_token: str


@dataclass
class InstanceSpec:
    """How to start one instance: its service, port and environment."""

    name: str
    service: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None  # None: `python -m services <package>`
    health_path: str = "/health"


def lab_ports(port_offset: int = 0) -> dict[str, int]:
    """Return ``instance -> port`` of the standard lab-service instances (``python -m services``)."""
    return {name: port + port_offset for name, port in catalog.standard_ports().items()}


def helper_port(service: str, port_offset: int = 0) -> int:
    """Return the port of a single-instance service such as ``prometheus`` or ``dashboard``."""
    return catalog.service(service).ports[0] + port_offset


def start_order() -> list[str]:
    """Return the service names in the order they start (dependencies first)."""
    return [svc.name for svc in catalog.SERVICES]


def local_host(_name: str) -> str:
    """Where an instance is reached in local mode: every process listens on loopback."""
    return "127.0.0.1"


def container_host(name: str) -> str:
    """Where an instance is reached in compose: by its service name, resolved at each connection."""
    return name


def instance_env(
    name: str,
    port: int,
    ports: dict[str, int],
    secrets: Secrets,
    data_dir: Path,
    host: Callable[[str], str] = local_host,
) -> dict[str, str]:
    """Return the environment of lab-service instance ``name`` given the ports of every instance.

    ``host`` says where another instance is reached: loopback locally, its name in compose.
    """
    svc = catalog.service(service_of(name))

    def url(instance: str) -> str:
        return f"http://{host(instance)}:{ports[instance]}"

    def members(service: str) -> str:
        return ",".join(f"{n}={url(n)}" for n in sorted(ports) if service_of(n) == service)

    env = {
        "SCALELAB_SERVICE": svc.package,
        "SCALELAB_INSTANCE": name,
        "SCALELAB_BIND": "127.0.0.1" if host is local_host else "0.0.0.0",
        "SCALELAB_ADMIN_TOKEN": secrets.admin_token,
        svc.port_env: str(port),
    }
    if svc.threads:
        env["SCALELAB_THREADS"] = str(svc.threads)
    if svc.id_env:
        env[svc.id_env] = index_of(name)
    if svc.needs_jwt_secret:
        env["SCALELAB_JWT_SECRET"] = secrets.jwt_secret
    for variable, target in svc.links.items():
        env[variable] = url(catalog.instance_names(catalog.service(target))[0])
    for variable, filename in svc.data_files.items():
        env[variable] = str(data_dir / filename)
    for balanced, pool in catalog.pool_holders():
        if pool.holder == svc.name:
            env[pool.members_env] = members(balanced.name)
    return env


def default_topology(secrets: Secrets, data_dir: Path, port_offset: int = 0) -> list[InstanceSpec]:
    """Return the standard lab-service instances, in start order."""
    ports = lab_ports(port_offset)
    return [
        InstanceSpec(
            name,
            service_of(name),
            port,
            instance_env(name, port, ports, secrets, data_dir),
            health_path=catalog.service(service_of(name)).health_path,
        )
        for name, port in ports.items()
    ]


def prometheus_spec(binary: str, config_dir: Path, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of a local Prometheus reading ``config_dir``, keeping its data there too."""
    port = helper_port("prometheus", port_offset)
    command = [
        binary,
        f"--config.file={config_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={config_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2d",
    ]
    return InstanceSpec("prometheus", "prometheus", port, command=command, health_path=_health("prometheus"))


def loadgen_spec(python: str, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of the load engine: Locust with the lab's users, idle until told to swarm."""
    port = helper_port("loadgen", port_offset)
    target = catalog.entry()
    command = [
        python, "-m", "locust", "-f", str(LOADGEN_LOCUSTFILE),
        "--web-host", "127.0.0.1", "--web-port", str(port),
        "--host", f"http://127.0.0.1:{target.ports[0] + port_offset}",
    ]  # fmt: skip
    env = {"SCALELAB_INSTANCE": "loadgen"}
    return InstanceSpec("loadgen", "loadgen", port, env=env, command=command, health_path=_health("loadgen"))


def dashboard_spec(python: str, run_dir: Path, results_dir: Path, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of the control page: it reads the stack from ``run_dir``, writes reports to ``results_dir``."""
    svc = catalog.service("dashboard")
    port = svc.ports[0] + port_offset
    env = {
        "SCALELAB_INSTANCE": svc.name,
        "SCALELAB_ORCHESTRATOR": "local",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_RUN_DIR": str(run_dir),
        "DASHBOARD_RESULTS_DIR": str(results_dir),
    }
    for variable, target in svc.links.items():
        env[variable] = f"http://127.0.0.1:{helper_port(target, port_offset)}"
    return InstanceSpec(svc.name, svc.name, port, env=env, command=[python, "-m", "dashboard"])


def _health(service: str) -> str:
    return catalog.service(service).health_path
