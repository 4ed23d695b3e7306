"""Control the compose stack's containers through the Docker API (the `docker` SDK).

Acts only on containers labelled with this compose project; any other container is out of
reach, whatever its name.
"""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

from .base import InstanceInfo, Orchestrator, OrchestratorError, UnknownInstance
from .compose import PROJECT, PUBLISHED
from .membership import BALANCED_BY
from .topology import EXTRA_PORT_BASE, PORTS, service_of

__all__ = ["PROJECT_LABEL", "SERVICE_LABEL", "DockerOrchestrator", "docker_stack_running"]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
HEALTH_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.25
# Docker's container states, as the orchestrator interface names them.
STATES = {"running": "running", "paused": "paused", "restarting": "running"}


def _client() -> Any:
    import docker

    return docker.from_env()


def docker_stack_running(project: str = PROJECT) -> bool:
    """Return whether a Docker engine answers and runs a container of ``project``."""
    try:
        client = _client()
        return bool(client.containers.list(filters={"label": f"{PROJECT_LABEL}={project}"}))
    except Exception:  # no SDK, no engine, no permission: there is no Docker stack to control
        return False


class DockerOrchestrator(Orchestrator):
    """The compose project's containers, by compose service name (= instance name)."""

    def __init__(self, client: Any = None, project: str = PROJECT, in_network: bool = False) -> None:
        """Control ``project``'s containers; ``in_network``: the caller runs inside the compose network."""
        self.client = client or _client()
        self.project = project
        # Inside the network every container is reached by its service name (Docker's DNS);
        # outside it only the published ones are, on loopback.
        self.in_network = in_network

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
        host = "127.0.0.1" if name in PUBLISHED and not self.in_network else name
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

    def add(self, service: str) -> InstanceInfo:
        if service not in ("microservice", "gateway"):
            raise OrchestratorError(f"cannot add a {service!r}: only microservice and gateway instances scale out")
        containers = self._containers()
        template = next((c for n, c in sorted(containers.items()) if service_of(n) == service), None)
        if template is None:
            raise OrchestratorError(f"no {service} container of project {self.project!r} to copy")
        numbers = [int(n.rpartition("-")[2]) for n in containers if service_of(n) == service]
        name = f"{service}-{max(numbers) + 1}"
        port = EXTRA_PORT_BASE + max(numbers)
        env = dict(item.split("=", 1) for item in template.attrs["Config"]["Env"])
        prefix = "MICROSERVICE" if service == "microservice" else "GATEWAY"
        env.update({"SCALELAB_INSTANCE": name, f"{prefix}_PORT": str(port), f"{prefix}_ID": name.rpartition("-")[2]})
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
        balancer, path = BALANCED_BY[service]
        peers = [
            f"http://{peer}:{_port_of(peer, c)}" for peer, c in containers.items()
            if service_of(peer) == balancer and c.status == "running"
        ]  # fmt: skip
        # Only the containers' own network reaches the balancing instances: register from inside.
        code, output = container.exec_run(
            ["python", "-m", "services.orchestrator.membership", name, f"http://{name}:{port}", path, *peers]
        )
        if code != 0:
            raise OrchestratorError(f"{name} started but could not be registered: {output.decode(errors='replace')}")
        return self._info(name, container)

    def remove(self, name: str) -> None:
        containers = self._containers()
        if name not in containers:
            self._container(name)  # raises UnknownInstance naming the known ones
        container = containers[name]
        service = service_of(name)
        if service not in BALANCED_BY:
            raise OrchestratorError(
                f"cannot remove {name}: only microservice and gateway instances scale in; "
                f"`scalelab kill {name}` stops it"
            )
        others = [n for n, c in containers.items() if n != name and service_of(n) == service and c.status == "running"]
        if not others:
            raise OrchestratorError(
                f"cannot remove {name}: it is the last running {service}, and without one every request "
                f"that needs it would fail; `scalelab add {service}` (or start a stopped one) first"
            )
        balancer, path = BALANCED_BY[service]
        peers = {peer: c for peer, c in containers.items() if service_of(peer) == balancer}
        paused = sorted(peer for peer, c in peers.items() if c.status == "paused")
        if paused:  # it could not drop the instance now, and would send to it once resumed
            raise OrchestratorError(
                f"cannot remove {name}: {', '.join(paused)} is paused and cannot take it out of its pool; "
                f"`scalelab resume {paused[0]}` first"
            )
        urls = [f"http://{peer}:{_port_of(peer, c)}" for peer, c in peers.items() if c.status == "running"]
        # Only the containers' own network reaches the balancing instances: withdraw from inside,
        # from the instance itself while it runs, else from a running instance of its service.
        runner = container if container.status == "running" else containers[others[0]]
        code, output = runner.exec_run(
            ["python", "-m", "services.orchestrator.membership", "--withdraw", name, path, *urls]
        )
        if code != 0:
            raise OrchestratorError(
                f"{name} is still running: it could not be taken out of rotation: {output.decode(errors='replace')}"
            )
        if container.status == "paused":
            container.unpause()  # a frozen process cannot act on SIGTERM
        container.stop(timeout=STOP_GRACE_SECONDS)  # SIGTERM, then SIGKILL after the grace period
        container.remove()

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


def _port_of(name: str, container: Any) -> int:
    """Return the port the instance listens on inside the network (its classic port)."""
    if name in PUBLISHED:
        return PUBLISHED[name]
    if name in PORTS:
        return PORTS[name]
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"] if "=" in item)
    for key, value in env.items():
        if key.endswith("_PORT") and value.isdigit():
            return int(value)
    return 0
