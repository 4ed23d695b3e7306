"""The Docker Swarm stack file, generated from the catalog, for ``docker stack deploy``.

The same images, ports, knobs and limits as the compose stack, with what a swarm does
differently: one swarm service per catalog service, its instances being replicas (tasks). A
task takes its instance name and id from its slot (``gateway-2``), every task of a service
listens on the service's first classic port, and the pools find the balanced tiers' tasks
through the swarm's DNS (``tasks.gateway``) instead of a fixed list, so scaling out and in
needs no call to any pool. Prometheus finds the tasks through the swarm's own service
discovery. Written by ``scalelab up --engine swarm`` into the run directory, with the
Prometheus configuration it needs as swarm configs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from scalelab import catalog
from scalelab.generate.compose import (
    CONTAINER_DATA,
    CONTAINER_RESULTS,
    CONTROL_IMAGE,
    DASHBOARD_PASSWORD,
    DOCKER_SOCKET,
    HEALTHCHECK,
    SECRETS,
    SERVICES_IMAGE,
    bind_mount,
    compose_document,
    grafana_environment,
    loadgen_command,
    python_healthcheck,
)
from scalelab.generate.scrape import RULE_FILES, prometheus_config
from scalelab.paths import stack_file
from scalelab.topology import instance_env, lab_ports

__all__ = [
    "NETWORK",
    "STACK",
    "TASK_SLOT",
    "numbered",
    "stack_document",
    "stack_prometheus_config",
    "write_stack",
]

STACK = "scalelab"
# The stack's one overlay network; attachable, so a one-off container (a test, a tool) can join it.
NETWORK = "lab"
# Docker expands this in a service's environment for each task: 1, 2, 3, ...
TASK_SLOT = "{{.Task.Slot}}"
# A killed task is replaced after this long, so the failover shows before the swarm heals it.
RESTART_DELAY = "5s"
# Service labels Prometheus's swarm discovery reads to name each target as the other modes do.
LABEL_SERVICE = "scalelab.service"
LABEL_PORT = "scalelab.port"
LABEL_NUMBERED = "scalelab.numbered"
PROMETHEUS_DIR = "/etc/prometheus"
# The stack's volumes get their own names: a compose project of the same name would share them otherwise
# (both are scalelab_<volume>), and the swarm's Prometheus, running as root, would leave files compose's cannot write.
VOLUME_PREFIX = "swarm-"
# The names a lab room reaches the published services by, from the deploying shell (none by default).
ALLOWED_HOSTS_ENV = "SCALELAB_ALLOWED_HOSTS"
ALLOWED_HOSTS = f"${{{ALLOWED_HOSTS_ENV}:-}}"


def numbered(svc: catalog.Service) -> bool:
    """Return whether a service's instances carry a number (``gateway-2``) rather than its bare name."""
    return catalog.instance_names(svc)[0] != svc.name


def _swarm_host(instance: str) -> str:
    """Where an instance's service is reached in the swarm: its service name (a virtual IP over its tasks)."""
    return catalog.service_of(instance)


def _deploy(svc: catalog.Service, replicas: int = 1, manager: bool = False) -> dict[str, Any]:
    deploy: dict[str, Any] = {
        "replicas": replicas,
        # A service's name resolves to its tasks' own addresses, not to a virtual IP: the swarm's virtual
        # IPs and routing mesh need the kernel's IPVS, which small VMs often lack, and the lab's balancer
        # should be the only one between a client and the gateways.
        "endpoint_mode": "dnsrr",
        "restart_policy": {"condition": "any", "delay": RESTART_DELAY},
    }
    limits: dict[str, Any] = {}
    if svc.cpus is not None:
        limits["cpus"] = str(svc.cpus)
    if svc.memory_mb is not None:
        limits["memory"] = f"{svc.memory_mb}M"
    if limits:
        deploy["resources"] = {"limits": limits}
    if svc.scraped:
        deploy["labels"] = {
            LABEL_SERVICE: svc.name,
            LABEL_PORT: str(svc.ports[0]),
            LABEL_NUMBERED: "true" if numbered(svc) else "false",
        }
    if manager:  # it talks to the swarm's API, which only managers serve
        deploy["placement"] = {"constraints": ["node.role == manager"]}
    return deploy


def _published(svc: catalog.Service) -> list[dict[str, Any]]:
    if not svc.published:
        return []
    port = svc.ports[0]
    # On the node that runs the task (no routing mesh: see _deploy).
    return [{"target": port, "published": port, "protocol": "tcp", "mode": "host"}]


def _lab_service(svc: catalog.Service) -> dict[str, Any]:
    first = catalog.instance_names(svc)[0]
    port = svc.ports[0]
    ports = {name: catalog.service(catalog.service_of(name)).ports[0] for name in lab_ports()}
    env = instance_env(first, port, ports, SECRETS, CONTAINER_DATA, host=_swarm_host)
    if numbered(svc):
        env["SCALELAB_INSTANCE"] = f"{svc.name}-{TASK_SLOT}"
    if svc.id_env:
        env[svc.id_env] = TASK_SLOT
    for balanced, pool in catalog.pool_holders():
        if pool.holder == svc.name:
            env.pop(pool.members_env, None)
            env[pool.discover_env] = f"tasks.{balanced.name}:{balanced.ports[0]}"
    env["SCALELAB_HEALTH_PORT"] = str(port)
    env["SCALELAB_HEALTH_PATH"] = svc.health_path
    if svc.published:
        env[ALLOWED_HOSTS_ENV] = ALLOWED_HOSTS
    spec: dict[str, Any] = {
        "image": SERVICES_IMAGE,
        "environment": dict(sorted(env.items())),
        "healthcheck": python_healthcheck(),
        "networks": [NETWORK],
        "deploy": _deploy(svc, len(catalog.instance_names(svc))),
    }
    if svc.data_files:
        spec["volumes"] = [f"{VOLUME_PREFIX}{svc.name}-data:{CONTAINER_DATA}"]
    if svc.published:
        spec["ports"] = _published(svc)
    return spec


def _loadgen_service(svc: catalog.Service) -> dict[str, Any]:
    port = svc.ports[0]
    entry = catalog.entry()
    return {
        "image": CONTROL_IMAGE,
        "command": loadgen_command(port, f"http://{entry.name}:{entry.ports[0]}"),
        "environment": {
            "SCALELAB_INSTANCE": svc.name,
            "SCALELAB_HEALTH_PORT": str(port),
            "SCALELAB_HEALTH_PATH": svc.health_path,
            ALLOWED_HOSTS_ENV: ALLOWED_HOSTS,
        },
        "healthcheck": python_healthcheck(),
        "networks": [NETWORK],
        "ports": _published(svc),
        "deploy": _deploy(svc),
    }


def _prometheus_service(svc: catalog.Service, configs: dict[str, str]) -> dict[str, Any]:
    port = svc.ports[0]
    ready = f"http://127.0.0.1:{port}{svc.health_path}"
    return {
        "image": "prom/prometheus:latest",
        "command": [
            f"--config.file={PROMETHEUS_DIR}/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=:{port}",
        ],
        # root: the swarm discovery reads the engine's socket, root:docker on the host.
        "user": "root",
        "configs": [{"source": source, "target": f"{PROMETHEUS_DIR}/{target}"} for source, target in configs.items()],
        "volumes": [f"{DOCKER_SOCKET}:{DOCKER_SOCKET}:ro", f"{VOLUME_PREFIX}prometheus-data:/prometheus"],
        "healthcheck": {"test": ["CMD-SHELL", f"wget -qO- {ready} || curl -fs {ready}"], **HEALTHCHECK},
        "networks": [NETWORK],
        "ports": _published(svc),
        "deploy": _deploy(svc, manager=True),
    }


def _grafana_service(svc: catalog.Service, grafana_configs: dict[str, str]) -> dict[str, Any]:
    port = svc.ports[0]
    return {
        "image": "grafana/grafana:latest",
        "environment": grafana_environment(svc),
        "configs": [{"source": source, "target": target} for source, target in grafana_configs.items()],
        "healthcheck": {
            "test": ["CMD-SHELL", f"wget -qO- http://127.0.0.1:{port}{svc.health_path} || exit 1"],
            **HEALTHCHECK,
        },
        "networks": [NETWORK],
        "ports": _published(svc),
        "deploy": _deploy(svc),
    }


def _dashboard_service(svc: catalog.Service) -> dict[str, Any]:
    port = svc.ports[0]
    grafana = catalog.service("grafana")
    env = {
        "SCALELAB_INSTANCE": svc.name,
        "SCALELAB_ORCHESTRATOR": "swarm",
        "DASHBOARD_DOCKER_IN_NETWORK": "1",
        "DASHBOARD_HOST": "0.0.0.0",
        "DASHBOARD_PORT": str(port),
        "DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
        "SCALELAB_ADMIN_TOKEN": SECRETS.admin_token,
        **{variable: f"http://{target}:{catalog.service(target).ports[0]}" for variable, target in svc.links.items()},
        "DASHBOARD_GRAFANA_URL": f"http://127.0.0.1:{grafana.ports[0]}",
        "DASHBOARD_GRAFANA_PROBE_URL": f"http://{grafana.name}:{grafana.ports[0]}",
        "SCALELAB_HEALTH_PORT": str(port),
        "SCALELAB_HEALTH_PATH": svc.health_path,
        "DASHBOARD_RESULTS_DIR": CONTAINER_RESULTS,
        ALLOWED_HOSTS_ENV: ALLOWED_HOSTS,
    }
    return {
        "image": CONTROL_IMAGE,
        "command": ["python", "-m", "dashboard"],
        "user": "root",  # the engine's socket is root:docker on the host
        "environment": env,
        "volumes": [f"{DOCKER_SOCKET}:{DOCKER_SOCKET}", f"{VOLUME_PREFIX}dashboard-results:{CONTAINER_RESULTS}"],
        "healthcheck": python_healthcheck(),
        "networks": [NETWORK],
        "ports": _published(svc),
        "deploy": _deploy(svc, manager=True),
    }


def stack_prometheus_config() -> dict[str, Any]:
    """Return prometheus.yml for the swarm: its tasks found through the engine, labelled as in every mode."""
    meta = "__meta_dockerswarm_"

    def label(name: str) -> str:
        return meta + "service_label_" + name.replace(".", "_")

    relabel = [
        {"source_labels": [label("com.docker.stack.namespace")], "regex": STACK, "action": "keep"},
        {"source_labels": [label(LABEL_SERVICE)], "regex": ".+", "action": "keep"},
        {"source_labels": [meta + "task_desired_state"], "regex": "running", "action": "keep"},
        {"source_labels": [meta + "network_name"], "regex": f"{STACK}_{NETWORK}", "action": "keep"},
        # Scrape the port the instance listens on, at its address on the stack's network.
        {
            "source_labels": ["__address__", label(LABEL_PORT)],
            "separator": ";",
            "regex": "(.+):[0-9]+;(.+)",
            "replacement": "$1:$2",
            "target_label": "__address__",
        },
        {"source_labels": [label(LABEL_SERVICE)], "target_label": "service"},
        {
            "source_labels": [label(LABEL_SERVICE), meta + "task_slot"],
            "separator": "-",
            "target_label": "instance",
        },
        {
            "source_labels": [label(LABEL_NUMBERED), label(LABEL_SERVICE)],
            "separator": ";",
            "regex": "false;(.+)",
            "replacement": "$1",
            "target_label": "instance",
        },
    ]
    discovery = {
        "dockerswarm_sd_configs": [{"host": f"unix://{DOCKER_SOCKET}", "role": "tasks", "refresh_interval": "2s"}],
        "relabel_configs": relabel,
    }
    return prometheus_config(f"localhost:{catalog.service('prometheus').ports[0]}", discovery)


def _config_name(target: str, content: bytes) -> str:
    """Return a swarm config's name: swarm configs cannot change, so a new content gets a new name."""
    digest = hashlib.sha256(content).hexdigest()[:12]
    return f"{target.replace('/', '-').replace('.', '-')}-{digest}"


def stack_document(
    directory: Path, services: list[str] | None = None, images: dict[str, str] | None = None
) -> dict[str, Any]:
    """Return the stack file as a dict, writing the config files it references into ``directory``.

    ``services`` limits it to those catalog services (e.g. without Grafana where its image is missing);
    ``images`` names a build of an image (``scalelab/services:latest`` -> ``scalelab/services:3f2a...``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    configs: dict[str, dict[str, str]] = {}

    def config(target: str, content: bytes) -> str:
        name = _config_name(target, content)
        path = directory / name
        path.write_bytes(content)
        configs[name] = {"file": str(path)}
        return name

    header = b"# Generated by scalelab/generate/stack.py for the swarm stack.\n"
    prometheus_files = {
        config("prometheus.yml", header + yaml.safe_dump(stack_prometheus_config(), sort_keys=False).encode()): (
            "prometheus.yml"
        )
    }
    for rule_file in RULE_FILES:
        prometheus_files[config(rule_file, stack_file("prometheus", rule_file).read_bytes())] = rule_file
    # Grafana gets the files compose bind-mounts into it, at the same paths, one swarm config each.
    grafana_files: dict[str, str] = {}
    for volume in compose_document()["services"][catalog.service("grafana").name]["volumes"]:
        found = bind_mount(volume)
        if found is None:
            continue
        source, target = found
        files = [source] if source.is_file() else sorted(path for path in source.rglob("*") if path.is_file())
        for path in files:
            relative = path.name if path == source else f"{source.name}/{path.relative_to(source).as_posix()}"
            inside = target if path == source else f"{target}/{path.relative_to(source).as_posix()}"
            grafana_files[config(relative, path.read_bytes())] = inside

    wanted = services or [svc.name for svc in catalog.SERVICES]
    out: dict[str, Any] = {}
    for svc in catalog.SERVICES:
        if svc.name not in wanted:
            continue
        if svc.runs == "service":
            out[svc.name] = _lab_service(svc)
        elif svc.runs == "loadgen":
            out[svc.name] = _loadgen_service(svc)
        elif svc.runs == "prometheus":
            out[svc.name] = _prometheus_service(svc, prometheus_files)
        elif svc.runs == "grafana":
            out[svc.name] = _grafana_service(svc, grafana_files)
        elif svc.runs == "dashboard":
            out[svc.name] = _dashboard_service(svc)
    for spec in out.values():
        spec["image"] = (images or {}).get(spec["image"], spec["image"])
    used = {item["source"] for spec in out.values() for item in spec.get("configs", [])}
    volumes = [f"{VOLUME_PREFIX}{svc.name}-data" for svc in catalog.SERVICES if svc.data_files and svc.name in out]
    return {
        "version": "3.8",
        "services": out,
        "networks": {NETWORK: {"driver": "overlay", "attachable": True}},
        "volumes": {
            volume: {} for volume in [*volumes, f"{VOLUME_PREFIX}prometheus-data", f"{VOLUME_PREFIX}dashboard-results"]
        },
        "configs": {name: spec for name, spec in configs.items() if name in used},
    }


def write_stack(directory: Path, services: list[str] | None = None, images: dict[str, str] | None = None) -> Path:
    """Write the stack file (and its configs) into ``directory``; return the stack file's path."""
    document = stack_document(directory, services, images)
    path = directory / "stack.yml"
    header = "# Generated by scalelab/generate/stack.py from the catalog: `scalelab up --engine swarm` deploys it.\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, width=120))
    return path
