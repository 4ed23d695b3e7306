"""The stack's instances: names, ports and the environment each one starts with.

One place says which instances exist, so every mode uses the same names and ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "EXTRA_PORT_BASE",
    "START_ORDER",
    "InstanceSpec",
    "Secrets",
    "dashboard_spec",
    "default_topology",
    "loadgen_spec",
    "prometheus_spec",
]

# Ports of the classic lab, kept exactly.
PORTS = {
    "load-balancer": 8000,
    "gateway-1": 5000,
    "gateway-2": 5003,
    "cache": 5004,
    "database": 5002,
    "microservice-1": 5001,
    "microservice-2": 5006,
    "microservice-3": 5007,
    "worker": 5005,
}
# Instances added at runtime (scalelab add) get ports from here up.
EXTRA_PORT_BASE = 5100
# Request threads per service. Threads that wait (on the database's simulated latency, a
# microservice's service time, a gateway's calls) must not be what limits the lab, so those
# services get many; the cache only does quick work, where fewer threads contend less.
THREADS = {"gateway": 32, "database": 32, "microservice": 32, "worker": 8, "cache": 4}
# Dependencies first, so each instance finds what it calls already listening.
START_ORDER = (
    "database", "cache", "worker", "microservice", "gateway", "load-balancer", "loadgen", "prometheus", "dashboard",
)  # fmt: skip
PROMETHEUS_PORT = 9090
LOADGEN_PORT = 8089  # Locust's own web UI and API
DASHBOARD_PORT = 8050  # the control app


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
    command: list[str] | None = None  # None: `python -m services <service>`
    health_path: str = "/health"


def local_host(_name: str) -> str:
    """Where an instance is reached in local mode: every process listens on loopback."""
    return "127.0.0.1"


def container_host(name: str) -> str:
    """Where an instance is reached in compose: by its service name, resolved at each connection."""
    return name


def service_of(name: str) -> str:
    """Return the service an instance name belongs to (``gateway-2`` -> ``gateway``)."""
    base, _, number = name.rpartition("-")
    return base if number.isdigit() else name


def index_of(name: str) -> str:
    """Return the instance number as a string id (``gateway-2`` -> ``"2"``)."""
    return name.rpartition("-")[2]


def instance_env(
    name: str,
    port: int,
    specs_ports: dict[str, int],
    secrets: Secrets,
    data_dir: Path,
    host: Callable[[str], str] = local_host,
) -> dict[str, str]:
    """Return the environment for instance ``name`` given the ports of every instance.

    ``host`` says where another instance is reached: loopback locally, its name in compose.
    """
    service = service_of(name)

    def url(instance: str) -> str:
        return f"http://{host(instance)}:{specs_ports[instance]}"

    env = {
        "SCALELAB_SERVICE": service,
        "SCALELAB_INSTANCE": name,
        "SCALELAB_BIND": "127.0.0.1" if host is local_host else "0.0.0.0",
        "SCALELAB_ADMIN_TOKEN": secrets.admin_token,
    }
    if service in THREADS:
        env["SCALELAB_THREADS"] = str(THREADS[service])

    def members(prefix: str) -> str:
        return ",".join(f"{n}={url(n)}" for n in sorted(specs_ports) if service_of(n) == prefix)

    if service == "load-balancer":
        env.update(BALANCER_PORT=str(port), BALANCER_BACKENDS=members("gateway"))
    elif service == "gateway":
        env.update(
            GATEWAY_PORT=str(port),
            GATEWAY_ID=index_of(name),
            SCALELAB_JWT_SECRET=secrets.jwt_secret,
            GATEWAY_CACHE_URL=url("cache"),
            GATEWAY_DATABASE_URL=url("database"),
            GATEWAY_WORKER_URL=url("worker"),
            GATEWAY_MICROSERVICES=members("microservice"),
        )
    elif service == "microservice":
        env.update(MICROSERVICE_PORT=str(port), MICROSERVICE_ID=index_of(name))
    elif service == "cache":
        env.update(CACHE_PORT=str(port))
    elif service == "database":
        env.update(DATABASE_PORT=str(port), DATABASE_PATH=str(data_dir / "database.sqlite3"))
    elif service == "worker":
        env.update(WORKER_PORT=str(port), WORKER_QUEUE_PATH=str(data_dir / "tasks.sqlite3"))
    return env


def default_topology(secrets: Secrets, data_dir: Path, port_offset: int = 0) -> list[InstanceSpec]:
    """Return the nine instances of the standard stack, in start order."""
    ports = {name: port + port_offset for name, port in PORTS.items()}
    specs = [
        InstanceSpec(name, service_of(name), port, instance_env(name, port, ports, secrets, data_dir))
        for name, port in ports.items()
    ]
    return sorted(specs, key=lambda spec: START_ORDER.index(spec.service))


def prometheus_spec(binary: str, config_dir: Path, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of a local Prometheus reading ``config_dir``, keeping its data there too."""
    port = PROMETHEUS_PORT + port_offset
    command = [
        binary,
        f"--config.file={config_dir / 'prometheus.yml'}",
        f"--storage.tsdb.path={config_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2d",
    ]
    return InstanceSpec("prometheus", "prometheus", port, command=command, health_path="/-/ready")


def loadgen_spec(python: str, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of the load engine: Locust with the lab's users, idle until told to swarm."""
    port = LOADGEN_PORT + port_offset
    balancer = PORTS["load-balancer"] + port_offset
    locustfile = Path(__file__).resolve().parents[2] / "dashboard" / "loadgen" / "locustfile.py"
    command = [
        python, "-m", "locust", "-f", str(locustfile),
        "--web-host", "127.0.0.1", "--web-port", str(port), "--host", f"http://127.0.0.1:{balancer}",
    ]  # fmt: skip
    env = {"SCALELAB_INSTANCE": "loadgen"}
    return InstanceSpec("loadgen", "loadgen", port, env=env, command=command, health_path="/")


def dashboard_spec(python: str, run_dir: Path, port_offset: int = 0) -> InstanceSpec:
    """Return the spec of the control app, reading the stack from ``run_dir`` and its neighbours' ports."""
    port = DASHBOARD_PORT + port_offset
    env = {
        "SCALELAB_INSTANCE": "dashboard",
        "SCALELAB_ORCHESTRATOR": "local",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_RUN_DIR": str(run_dir),
        "DASHBOARD_PROMETHEUS_URL": f"http://127.0.0.1:{PROMETHEUS_PORT + port_offset}",
        "DASHBOARD_LOADGEN_URL": f"http://127.0.0.1:{LOADGEN_PORT + port_offset}",
        # Beside the run directory, i.e. where `scalelab experiment` run from the same folder writes them.
        "DASHBOARD_RESULTS_DIR": str(Path(run_dir).resolve().parent / "results"),
    }
    return InstanceSpec("dashboard", "dashboard", port, env=env, command=[python, "-m", "dashboard"])
