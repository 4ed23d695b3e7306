"""Control the compose stack's containers through the Docker API (the `docker` SDK).

Acts only on containers labelled with this compose project; any other container is out of
reach, whatever its name.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from scalelab import catalog
from scalelab.catalog import Pool
from scalelab.generate.compose import CONTROL_CONTAINER, PROJECT, published_ports
from scalelab.orchestrators.base import InstanceInfo, Orchestrator, OrchestratorError, UnknownInstance
from scalelab.topology import EXTRA_PORT_BASE, lab_ports, service_of

__all__ = ["PROJECT_LABEL", "SERVICE_LABEL", "DockerOrchestrator", "docker_stack_running", "engine_socket_exists"]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
HEALTH_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.25
# Docker's container states, as the orchestrator interface names them.
STATES = {"running": "running", "paused": "paused", "restarting": "running"}
DEFAULT_SOCKET = "/var/run/docker.sock"


def _client() -> Any:
    import docker

    return docker.from_env()


def engine_socket_exists(environ: Mapping[str, str] | None = None) -> bool:
    """Return False when the engine's local socket is plainly absent (the SDK would leak one finding out)."""
    host = (os.environ if environ is None else environ).get("DOCKER_HOST") or f"unix://{DEFAULT_SOCKET}"
    return not host.startswith("unix://") or Path(host.removeprefix("unix://")).exists()


def engine_finds(look: Callable[[Any], list[Any]]) -> bool:
    """Return whether a Docker engine answers and ``look(client)`` finds something there."""
    if not engine_socket_exists():
        return False
    try:
        client = _client()
    except Exception:  # no SDK, no engine, no permission: there is no Docker stack to control
        return False
    try:
        return bool(look(client))
    except Exception:  # the engine does not answer (or is no swarm manager): no such stack either
        return False
    finally:
        client.close()  # its connection pool, so no socket is left to the garbage collector


def docker_stack_running(project: str = PROJECT) -> bool:
    """Return whether a Docker engine answers and runs a container of ``project``."""
    return engine_finds(lambda client: client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"}))


class DockerOrchestrator(Orchestrator):
    """The compose project's containers, by compose service name (= instance name)."""

    limits_instances = True  # docker-compose.yml gives each container the catalog's cpus and mem_limit
    reports_seen_at = "./results beside docker-compose.yml"  # the control container's results folder, mounted
    #: How a user brings a stopped container back, for error messages ({name}: the instance).
    start_hint = "`docker compose start {name}` first"

    def __init__(self, client: Any = None, project: str = PROJECT, in_network: bool = False) -> None:
        """Control ``project``'s containers; ``in_network``: the caller runs inside the compose network."""
        self.client = client or _client()
        self.project = project
        # Inside the network every container is reached by its service name (Docker's DNS);
        # outside it only the published ones are, on loopback.
        self.in_network = in_network
        self.where = f"in compose project {project!r}"

    def _containers(self) -> dict[str, Any]:
        found = self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        return {container.labels.get(SERVICE_LABEL, container.name): container for container in found}

    def _container(self, name: str) -> Any:
        containers = self._containers()
        if name not in containers:
            raise UnknownInstance(
                f"no container of compose project {self.project!r} is named {name!r}; "
                f"known: {', '.join(sorted(containers)) or 'none'}"
            )
        return containers[name]

    def _info(self, name: str, container: Any) -> InstanceInfo:
        port = _port_of(name, container)
        state = STATES.get(container.status, "stopped")
        health = container.attrs["State"].get("Health", {}).get("Status") if state == "running" else None
        host = "127.0.0.1" if name in published_ports() and not self.in_network else name
        return InstanceInfo(name, service_of(name), port, state, health=health, host=host)

    def instances(self) -> list[InstanceInfo]:
        return [self._info(name, container) for name, container in sorted(self._containers().items())]

    def kill(self, name: str) -> InstanceInfo:
        container = self._container(name)
        if container.status not in STATES:
            raise OrchestratorError(f"{name} is not running; start it with `scalelab start {name}`")
        if container.status == "paused":
            container.unpause()
        container.kill()
        container.reload()
        return self._info(name, container)

    def start(self, name: str) -> InstanceInfo:
        container = self._container(name)
        if container.status in STATES:
            raise OrchestratorError(f"{name} is already {STATES[container.status]}; kill it first to restart it")
        container.start()
        self._wait_healthy(name, container)
        return self._info(name, container)

    def pause(self, name: str) -> InstanceInfo:
        container = self._container(name)
        if container.status != "running":
            raise OrchestratorError(f"{name} is {container.status}, not running: nothing to pause")
        container.pause()
        container.reload()
        return self._info(name, container)

    def resume(self, name: str) -> InstanceInfo:
        container = self._container(name)
        if container.status != "paused":
            raise OrchestratorError(f"{name} is {container.status}, not paused: nothing to resume")
        container.unpause()
        container.reload()
        return self._info(name, container)

    def _start_new(self, service: str) -> InstanceInfo:
        containers = self._containers()
        template = next((c for n, c in sorted(containers.items()) if service_of(n) == service), None)
        if template is None:
            raise OrchestratorError(f"no {service} container of project {self.project!r} to copy")
        svc = catalog.service(service)
        numbers = [int(n.rpartition("-")[2]) for n in containers if service_of(n) == service]
        name = f"{service}-{max(numbers) + 1}"
        used = {_port_of(n, c) for n, c in containers.items()}
        port = next(p for p in range(EXTRA_PORT_BASE, 65_535) if p not in used)
        env = dict(item.split("=", 1) for item in template.attrs["Config"]["Env"])
        env.update({"SCALELAB_INSTANCE": name, svc.port_env: str(port), "SCALELAB_HEALTH_PORT": str(port)})
        if svc.id_env:
            env[svc.id_env] = catalog.index_of(name)
        network = next(iter(template.attrs["NetworkSettings"]["Networks"]))
        labels = {
            PROJECT_LABEL: self.project,
            SERVICE_LABEL: name,
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.container-number": "1",
        }
        container = self.client.containers.run(
            template.image.id,
            name=f"{self.project}_{name}_1",
            environment=env,
            labels=labels,
            network=network,
            detach=True,
        )
        container.reload()
        # Reachable by its service name, like the compose services.
        self.client.networks.get(network).disconnect(container)
        self.client.networks.get(network).connect(container, aliases=[name])
        self._wait_healthy(name, container)
        return self._info(name, container)

    def _membership(self, args: list[str], what: str) -> None:
        """Run ``python -m scalelab.membership ARGS`` where the pools answer: here, or in the control container."""
        if self.in_network:
            from scalelab import membership

            if membership.main(args) != 0:
                raise OrchestratorError(what)
            return
        # Only the containers' own network reaches the balancing instances: the control
        # container (which carries the control plane) makes the calls from inside.
        control = self._containers().get(CONTROL_CONTAINER)
        if control is None or control.status != "running":
            raise OrchestratorError(
                f"{what}: the {CONTROL_CONTAINER} container, which reaches the pools from inside the network, "
                f"is not running; {self.start_hint.format(name=CONTROL_CONTAINER)}"
            )
        code, output = control.exec_run(["python", "-m", "scalelab.membership", *args])
        if code != 0:
            raise OrchestratorError(f"{what}: {output.decode(errors='replace').strip()}")

    def _announce(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo]) -> None:
        urls = [f"http://{peer.name}:{peer.port}" for peer in peers]
        self._membership(
            [info.name, f"http://{info.name}:{info.port}", pool.members_route, *urls],
            f"{info.name} started but could not be registered",
        )

    def _withdraw(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo], others: list[InstanceInfo]) -> None:
        urls = [f"http://{peer.name}:{peer.port}" for peer in peers]
        self._membership(
            ["--withdraw", info.name, pool.members_route, *urls],
            f"{info.name} is still running: it could not be taken out of rotation",
        )

    def _stop_and_forget(self, info: InstanceInfo, pool: Pool) -> None:
        container = self._container(info.name)
        if container.status == "paused":
            container.unpause()  # a frozen process cannot act on SIGTERM
        container.stop(timeout=STOP_GRACE_SECONDS)  # SIGTERM, then SIGKILL after the grace period
        container.remove()

    def reaches_pools(self) -> bool:
        return self.in_network

    def run_control(self, command: list[str], files: dict[str, bytes] | None = None) -> tuple[int, str]:
        """Run ``command`` in the control container, inside the network; ``files`` go to its /tmp first."""
        return self.run_inside(CONTROL_CONTAINER, command, files)

    def fetch_results(self, path: str, destination: Path) -> Path:
        """Copy folder ``path`` out of the control container into ``destination``; return the copy."""
        container = self._container(CONTROL_CONTAINER)
        stream, _stat = container.get_archive(path)
        archive = io.BytesIO(b"".join(stream))
        destination.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=archive) as tar:
            _extract(tar, destination)
        return destination / PurePosixPath(path).name

    def run_inside(self, name: str, command: list[str], files: dict[str, bytes] | None = None) -> tuple[int, str]:
        """Run ``command`` in instance ``name``'s container and return its exit code and output.

        ``files`` (name -> content) are put in the container's /tmp first.
        """
        container = self._container(name)
        if container.status != "running":
            raise OrchestratorError(f"{name} is {container.status}: start it first (`scalelab start {name}`)")
        if files:
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w") as tar:
                for filename, content in files.items():
                    entry = tarfile.TarInfo(filename)
                    entry.size = len(content)
                    tar.addfile(entry, io.BytesIO(content))
            container.put_archive("/tmp", archive.getvalue())
        # Not streamed: the SDK's exec streams leave their socket to the garbage collector.
        code, output = container.exec_run(command)
        return int(code or 0), output.decode(errors="replace")

    def _wait_healthy(self, name: str, container: Any) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status")
            if container.status == "running" and health in (None, "healthy"):
                return
            if container.status in ("exited", "dead"):
                raise OrchestratorError(
                    f"{name} exited while starting: {container.logs(tail=15).decode(errors='replace')}"
                )
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(
            f"{name} was not healthy within {HEALTH_TIMEOUT_SECONDS:.0f} s (docker logs {container.name})"
        )


# How long a removed instance gets to exit on SIGTERM before Docker kills it.
STOP_GRACE_SECONDS = 5


def _extract(tar: tarfile.TarFile, destination: Path) -> None:
    """Extract plain files and folders that stay inside ``destination``; refuse anything else."""
    root = destination.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not target.is_relative_to(root):
            raise OrchestratorError(f"refusing {member.name!r} from the container: not a plain file inside the report")
    tar.extractall(root)


def _port_of(name: str, container: Any) -> int:
    """Return the port the instance listens on inside the network (its classic port)."""
    published = published_ports()
    if name in published:
        return published[name]
    if name in lab_ports():
        return lab_ports()[name]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"] if "=" in item)
    for key, value in env.items():
        if key.endswith("_PORT") and value.isdigit():
            return int(value)
    return 0
