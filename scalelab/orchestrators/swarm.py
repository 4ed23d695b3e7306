"""Control the Docker Swarm stack's tasks through the Docker API: the same verbs as for compose.

An instance is a task: ``gateway-2`` is slot 2 of the stack's ``gateway`` service. Acts only on
services labelled with this stack's namespace and on their tasks' containers; anything else on
the engine is out of reach, whatever its name. Scaling goes through the swarm (``scale``); the
pools find new tasks and lose old ones through the swarm's DNS, with no call to any pool.

Kill, pause and resume act on a task's container, which must run on this engine's node (on a
one-node swarm, every task does). A killed task is the swarm's to replace: it starts a new one
in the same slot after the restart delay, and ``start`` waits for that.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scalelab import catalog
from scalelab.catalog import Pool
from scalelab.generate.compose import CONTROL_IMAGE, SERVICES_IMAGE, compose_dir, published_ports
from scalelab.generate.stack import NETWORK, STACK, numbered, stack_document, write_stack
from scalelab.orchestrators import loopback
from scalelab.orchestrators.base import InstanceInfo, OrchestratorError, UnknownInstance
from scalelab.orchestrators.docker import (
    HEALTH_TIMEOUT_SECONDS,
    POLL_SECONDS,
    STATES,
    STOP_GRACE_SECONDS,
    DockerOrchestrator,
    engine_finds,
)
from scalelab.topology import service_of

__all__ = ["NAMESPACE_LABEL", "SwarmOrchestrator", "swarm_stack_running"]

NAMESPACE_LABEL = "com.docker.stack.namespace"
SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
TASK_NAME_LABEL = "com.docker.swarm.task.name"
# The lab's own images and the Dockerfiles (in a checkout) they are built from.
LAB_IMAGES = {SERVICES_IMAGE: "services/Dockerfile", CONTROL_IMAGE: "dashboard/Dockerfile"}
# Every task starting at once on two cores: the images' health checks allow 15 s, the whole stack more.
UP_TIMEOUT_SECONDS = 240.0


def swarm_stack_running(stack: str = STACK) -> bool:
    """Return whether a Docker engine answers, is a swarm manager, and runs a service of ``stack``."""
    return engine_finds(lambda client: client.services.list(filters={"label": f"{NAMESPACE_LABEL}={stack}"}))


def catalog_names() -> set[str]:
    """Return the names of the catalog's services (a stack's service outside them is not the lab's)."""
    return {svc.name for svc in catalog.SERVICES}


def docker_errors() -> Any:
    """Return the docker SDK's errors module (imported where the SDK is needed, as _client does)."""
    import docker.errors

    return docker.errors


def instance_name(service: str, slot: int) -> str:
    """Return the instance name of task ``slot`` of catalog service ``service`` (``gateway-2``, or ``cache``)."""
    return f"{service}-{slot}" if numbered(catalog.service(service)) else service


def task_instance(labels: Mapping[str, str], stack: str = STACK) -> str | None:
    """Return the instance a task's container holds, from its labels; None when it is no lab task of ``stack``.

    Docker labels a task's container with its service (``scalelab_gateway``) and its task name
    (``scalelab_gateway.2.<task id>``), whose middle part is the slot.
    """
    if labels.get(NAMESPACE_LABEL) != stack:
        return None
    service = labels.get(SERVICE_NAME_LABEL, "").removeprefix(f"{stack}_")
    parts = labels.get(TASK_NAME_LABEL, "").split(".")
    if service not in catalog_names() or len(parts) < 2 or not parts[1].isdigit():
        return None
    return instance_name(service, int(parts[1]))


class SwarmOrchestrator(DockerOrchestrator):
    """The swarm stack's tasks, by instance name (service and slot)."""

    limits_instances = True  # the stack file gives each task the catalog's CPU and memory limits
    reports_seen_at = None  # in a volume of the control page's node: copied out
    start_hint = "the swarm replaces its task after the restart delay (`scalelab start {name}` waits for it)"

    def __init__(self, client: Any = None, stack: str = STACK, in_network: bool = False) -> None:
        """Control ``stack``'s tasks; ``in_network``: the caller runs inside the stack's network."""
        super().__init__(client, project=stack, in_network=in_network)
        self.stack = stack
        self.where = f"in swarm stack {stack!r}"
        #: Where ``up`` writes the stack file and its configs.
        self.stack_dir = Path.cwd() / ".scalelab" / "swarm"

    # ---------------------------------------------------------------- what runs
    def _services(self) -> dict[str, Any]:
        """Return the stack's swarm services by catalog service name."""
        found = self.client.services.list(filters={"label": f"{NAMESPACE_LABEL}={self.stack}"})
        services = {service.name.removeprefix(f"{self.stack}_"): service for service in found}
        return {name: service for name, service in services.items() if name in catalog_names()}

    def _service(self, name: str) -> Any:
        services = self._services()
        if name not in services:
            raise OrchestratorError(f"swarm stack {self.stack!r} has no service {name!r}; `scalelab up --engine swarm`")
        return services[name]

    def _tasks(self) -> dict[str, dict[str, Any]]:
        """Return the current task of every slot, by instance name (the newest, when the swarm replaced one)."""
        tasks: dict[str, dict[str, Any]] = {}
        for service, swarm_service in self._services().items():
            for task in swarm_service.tasks(filters={"desired-state": "running"}):
                name = instance_name(service, int(task.get("Slot") or 1))
                if name not in tasks or task["CreatedAt"] > tasks[name]["CreatedAt"]:
                    tasks[name] = task
        return tasks

    def _containers(self) -> dict[str, Any]:
        """Return the container of each instance's current task on this node (the newest per slot)."""
        # The plain listing, not the SDK's (which inspects each container and fails on one just removed).
        found = self.client.api.containers(all=True, filters={"label": f"{NAMESPACE_LABEL}={self.stack}"})
        newest: dict[str, dict[str, Any]] = {}
        for summary in found:
            name = task_instance(summary.get("Labels") or {}, self.stack)
            if name is None:
                continue
            if name not in newest or summary["Created"] > newest[name]["Created"]:
                newest[name] = summary
        containers: dict[str, Any] = {}
        for name, summary in newest.items():
            with contextlib.suppress(docker_errors().NotFound):  # removed since the listing
                containers[name] = self.client.containers.get(summary["Id"])
        return containers

    def _container(self, name: str) -> Any:
        containers = self._containers()
        if name not in containers:
            known = ", ".join(sorted(self._tasks())) or "none"
            raise UnknownInstance(
                f"no task of swarm stack {self.stack!r} on this node is named {name!r}; known: {known} "
                "(kill, pause and resume act on tasks of this node)"
            )
        return containers[name]

    @staticmethod
    def _address(task: Mapping[str, Any]) -> str | None:
        """Return the task's address on the stack's network, if it has one yet."""
        for attachment in task.get("NetworksAttachments") or []:
            if attachment["Network"]["Spec"]["Name"].endswith(f"_{NETWORK}") and attachment.get("Addresses"):
                return str(attachment["Addresses"][0]).split("/")[0]
        return None

    def _swarm_info(self, name: str, task: Mapping[str, Any] | None, container: Any) -> InstanceInfo:
        svc = catalog.service(service_of(name))
        state = "stopped"
        health = None
        if container is not None and task is not None and task["Status"]["State"] == "running":
            state = STATES.get(container.status, "stopped")
            if state == "running":
                health = container.attrs["State"].get("Health", {}).get("Status")
        if name in published_ports() and not self.in_network:
            host = "127.0.0.1"
        else:
            host = (self._address(task) if task else None) or svc.name
        return InstanceInfo(name, svc.name, svc.ports[0], state, health=health, health_path=svc.health_path, host=host)

    def _info(self, name: str, container: Any) -> InstanceInfo:
        return self._swarm_info(name, self._tasks().get(name), container)

    def instances(self) -> list[InstanceInfo]:
        tasks = self._tasks()
        containers = self._containers()
        return [self._swarm_info(name, task, containers.get(name)) for name, task in sorted(tasks.items())]

    # ---------------------------------------------------------------- verbs
    def start(self, name: str) -> InstanceInfo:
        """Wait for the swarm to replace a killed task in its slot; it does so after the restart delay."""
        current = next((info for info in self.instances() if info.name == name), None)
        if current is None:
            raise UnknownInstance(f"no instance named {name!r}; known: {', '.join(sorted(self._tasks())) or 'none'}")
        if current.state != "stopped":
            raise OrchestratorError(f"{name} is already {current.state}; kill it first to restart it")
        return self._wait_slot(name)

    def _wait_slot(self, name: str) -> InstanceInfo:
        """Wait until instance ``name``'s task runs and its container is healthy; return it."""
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            task = self._tasks().get(name)
            container = self._containers().get(name)
            if task is not None and container is not None:
                info = self._swarm_info(name, task, container)
                if info.state == "running" and info.health in (None, "healthy"):
                    return info
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(
            f"{name} was not running and healthy within {HEALTH_TIMEOUT_SECONDS:.0f} s; "
            f"see `docker service ps {self.stack}_{service_of(name)}`"
        )

    def _start_new(self, service: str) -> InstanceInfo:
        swarm_service = self._service(service)
        before = {name for name in self._tasks() if service_of(name) == service}
        replicas = int(swarm_service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])
        self._scale(swarm_service, replicas + 1)
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            new = sorted({name for name in self._tasks() if service_of(name) == service} - before)
            if new:
                return self._wait_slot(new[0])
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(f"the swarm started no new {service} task within {HEALTH_TIMEOUT_SECONDS:.0f} s")

    def _scale(self, swarm_service: Any, replicas: int) -> None:
        """Set a service's replicas and nothing else (the SDK's scale() rewrites the spec, restarting every task)."""
        self._docker(["service", "scale", "--detach", f"{swarm_service.name}={replicas}"], None)

    def _announce(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo]) -> None:
        """Nothing to do: every pool holder finds the new task in the swarm's DNS within a second."""

    def _withdraw(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo], others: list[InstanceInfo]) -> None:
        """Take the task out of each pool now (drained), before its container stops and its DNS record goes."""
        tasks = self._tasks()
        urls = []
        for peer in peers:
            address = self._address(tasks[peer.name]) if peer.name in tasks else None
            if address:
                urls.append(f"http://{address}:{peer.port}")
        self._membership(
            ["--withdraw", info.name, pool.members_route, *urls],
            f"{info.name} is still running: it could not be taken out of rotation",
        )

    def _stop_and_forget(self, info: InstanceInfo, pool: Pool) -> None:
        """Stop the task's container (SIGTERM, then SIGKILL), then scale the service in by one.

        The swarm removes a slot whose task is not running before any running one, so the slot
        just stopped is the one that goes (its replacement waits out the restart delay).
        """
        container = self._container(info.name)
        if container.status == "paused":
            container.unpause()  # a frozen process cannot act on SIGTERM
        container.stop(timeout=STOP_GRACE_SECONDS)
        swarm_service = self._service(info.service)
        replicas = int(swarm_service.attrs["Spec"]["Mode"]["Replicated"]["Replicas"])
        self._scale(swarm_service, replicas - 1)
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            running = [name for name in self._tasks() if service_of(name) == info.service]
            if len(running) <= replicas - 1:
                if info.name in running:
                    raise OrchestratorError(
                        f"the swarm scaled {info.service} in by removing another task than {info.name}; "
                        f"now running: {', '.join(sorted(running))}"
                    )
                return
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(f"the swarm did not scale {info.service} in within {HEALTH_TIMEOUT_SECONDS:.0f} s")

    # ---------------------------------------------------------------- the stack
    def up(self, directory: Path, environ: Mapping[str, str], open_ports: bool = False) -> list[str]:
        """Build the lab's images, deploy the stack and wait until every task is healthy; return what was left out.

        Services whose image is neither here nor pullable (Grafana, on a machine without a
        registry) are left out. Unless ``open_ports``, the published ports are kept to this
        machine first (:mod:`scalelab.orchestrators.loopback`).
        """
        self.require_manager()
        images = self.build_images()
        document = stack_document(directory)
        missing = [name for name, spec in document["services"].items() if not self._image_available(spec["image"])]
        kept = [name for name in document["services"] if name not in missing]
        stack_path = write_stack(directory, kept, images)
        ports = [catalog.service(name).ports[0] for name in kept if catalog.service(name).published]
        try:
            if open_ports:
                loopback.open_to_network()
            else:
                loopback.close_to_network(ports)
        except loopback.FirewallError as exc:
            raise OrchestratorError(f"{exc}; or open the ports to the network on purpose with --open-ports") from None
        self.deploy(stack_path, environ)
        self.wait_healthy(kept)
        return missing

    def require_manager(self) -> None:
        """Raise OrchestratorError unless this engine is a manager of an active swarm."""
        swarm = self.client.info().get("Swarm", {})
        if swarm.get("LocalNodeState") != "active":
            raise OrchestratorError(
                "this Docker engine is not in a swarm: `docker swarm init --advertise-addr 127.0.0.1` makes it a "
                "one-node swarm (in a lab room, join the others with the command it prints)"
            )
        if not swarm.get("ControlAvailable"):
            raise OrchestratorError(
                "this Docker engine is a swarm worker: run `scalelab up --engine swarm` on a manager"
            )

    def build_images(self) -> dict[str, str]:
        """Build the lab's images from the checkout (quick when nothing changed); installed, they must exist.

        Return each image's name -> a tag naming this build. The stack refers to those, so a
        second ``up`` after a change replaces the tasks (the same ``latest`` tag would look unchanged
        to the swarm, which cannot ask a registry for the image's digest).
        """
        root = compose_dir()
        versions = {}
        for tag, dockerfile in LAB_IMAGES.items():
            if (root / dockerfile).exists():
                try:
                    image, _log = self.client.images.build(path=str(root), dockerfile=dockerfile, tag=tag, rm=True)
                except Exception as exc:  # the SDK raises BuildError or APIError with the builder's words
                    raise OrchestratorError(f"building {tag} from {dockerfile} failed: {exc}") from None
            elif self._image_available(tag):
                image = self.client.images.get(tag)
            else:
                raise OrchestratorError(f"image {tag} is missing: build it from a checkout (docker compose build)")
            repository = tag.rpartition(":")[0]
            version = image.id.removeprefix("sha256:")[:12]
            image.tag(repository, version)
            versions[tag] = f"{repository}:{version}"
        return versions

    def _image_available(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except Exception:  # not here: try the registry, which a machine without one cannot reach
            pass
        try:
            self.client.images.pull(image)
            return True
        except Exception:
            return False

    def wait_healthy(self, services: list[str], timeout: float = UP_TIMEOUT_SECONDS) -> None:
        """Wait until every task of ``services`` runs and is healthy; raise OrchestratorError naming the late ones."""
        deadline = time.monotonic() + timeout
        late: list[str] = []
        while time.monotonic() < deadline:
            instances = {info.name: info for info in self.instances()}
            expected = [name for svc in services for name in catalog.instance_names(catalog.service(svc))]
            late = [
                name
                for name in expected
                if name not in instances
                or instances[name].state != "running"
                or instances[name].health not in (None, "healthy")
            ]
            if not late:
                return
            time.sleep(1.0)
        raise OrchestratorError(
            f"not healthy within {timeout:.0f} s: {', '.join(late)}; see `docker stack ps {self.stack}`"
        )

    def down(self) -> list[str]:
        """Remove the stack (volumes too) and the rules that kept its ports to this machine; return its services."""
        removed = self.remove_stack()
        with contextlib.suppress(loopback.FirewallError):  # no iptables: no rule was made
            loopback.open_to_network()
        return removed

    def deploy(self, stack_file: Path, environ: Mapping[str, str]) -> None:
        """Deploy (or update) the stack from ``stack_file`` (``docker stack deploy``); ``environ`` has the secrets."""
        self._docker(["stack", "deploy", "--compose-file", str(stack_file), self.stack], environ)

    def remove_stack(self) -> list[str]:
        """Remove every service, network, config and volume of the stack, waiting until its containers are gone.

        Return the services removed. The volumes go too (as with ``docker compose down -v``): the
        lab's data is made up, and a stack started again starts afresh.
        """
        names = sorted(self._services())
        if not names:
            return []
        self._docker(["stack", "rm", self.stack], None)
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        label = f"{NAMESPACE_LABEL}={self.stack}"
        while time.monotonic() < deadline:
            left = self.client.api.containers(all=True, filters={"label": label})
            networks = self.client.networks.list(filters={"label": label})
            if not left and not networks:
                for volume in self.client.volumes.list(filters={"label": label}):
                    with contextlib.suppress(docker_errors().APIError):  # one still held is left, not fatal
                        volume.remove()
                return names
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(f"stack {self.stack!r} was removed but its containers or network are still there")

    def _docker(self, args: list[str], environ: Mapping[str, str] | None) -> None:
        try:
            done = subprocess.run(
                ["docker", *args], capture_output=True, text=True, env=None if environ is None else dict(environ)
            )
        except FileNotFoundError:
            raise OrchestratorError("the `docker` command is missing; Debian's docker.io package has it") from None
        if done.returncode != 0:
            raise OrchestratorError(f"docker {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()}")
