"""DockerOrchestrator.remove on a fake Docker client: withdraw from inside the network, then stop and remove."""

from __future__ import annotations

from typing import Any

import pytest

from scalelab.orchestrators.base import OrchestratorError, UnknownInstance
from scalelab.orchestrators.docker import PROJECT_LABEL, SERVICE_LABEL, STOP_GRACE_SECONDS, DockerOrchestrator


class Container:
    """The parts of a docker SDK container that remove uses, recording what was done to it."""

    def __init__(self, service: str, status: str = "running", exit_code: int = 0) -> None:
        self.service = service
        self.status = status
        self.exit_code = exit_code
        self.calls: list[tuple[Any, ...]] = []
        self.name = f"scalelab_{service}_1"
        self.labels = {PROJECT_LABEL: "scalelab", SERVICE_LABEL: service}
        self.attrs = {"State": {}, "Config": {"Env": []}}

    def exec_run(self, command: list[str]) -> tuple[int, bytes]:
        self.calls.append(("exec", command))
        return self.exit_code, b"gateway-1 refused" if self.exit_code else b""

    def unpause(self) -> None:
        self.calls.append(("unpause",))

    def stop(self, timeout: int) -> None:
        self.calls.append(("stop", timeout))

    def remove(self) -> None:
        self.calls.append(("remove",))


class Containers:
    def __init__(self, containers: list[Container]) -> None:
        self.containers = containers

    def list(self, **_: Any) -> list[Container]:
        return self.containers


class Client:
    def __init__(self, *containers: Container) -> None:
        self.containers = Containers(list(containers))


def stack(**status: str) -> dict[str, Container]:
    """Containers of a small stack; ``status`` overrides a container's (e.g. ``microservice_2="exited"``)."""
    names = ("load-balancer", "gateway-1", "gateway-2", "microservice-1", "microservice-2", "cache", "dashboard")
    return {name: Container(name, status.get(name.replace("-", "_"), "running")) for name in names}


WITHDRAW = ["python", "-m", "scalelab.membership", "--withdraw"]


def test_a_running_microservice_is_withdrawn_from_inside_the_network_then_stopped_and_removed():
    containers = stack()
    DockerOrchestrator(Client(*containers.values())).remove("microservice-2")
    # The control container carries the control plane and reaches the gateways by name.
    assert containers["dashboard"].calls == [
        ("exec", [*WITHDRAW, "microservice-2", "/pool/backends", "http://gateway-1:5000", "http://gateway-2:5003"]),
    ]
    assert containers["microservice-2"].calls == [("stop", STOP_GRACE_SECONDS), ("remove",)]
    assert containers["microservice-1"].calls == []


def test_a_stopped_gateway_is_withdrawn_from_the_running_balancer():
    containers = stack(gateway_2="exited")
    DockerOrchestrator(Client(*containers.values())).remove("gateway-2")
    assert containers["dashboard"].calls == [
        ("exec", [*WITHDRAW, "gateway-2", "/lb/backends", "http://load-balancer:8000"])
    ]
    assert containers["gateway-2"].calls == [("stop", STOP_GRACE_SECONDS), ("remove",)]


def test_a_paused_instance_is_unpaused_so_that_it_can_exit():
    containers = stack(microservice_1="paused")
    DockerOrchestrator(Client(*containers.values())).remove("microservice-1")
    assert [call[0] for call in containers["microservice-1"].calls] == ["unpause", "stop", "remove"]
    assert containers["dashboard"].calls[0][0] == "exec"


def test_a_failed_withdrawal_leaves_the_instance_running():
    containers = stack()
    containers["dashboard"].exit_code = 1
    with pytest.raises(OrchestratorError, match=r"microservice-2 is still running.*gateway-1 refused"):
        DockerOrchestrator(Client(*containers.values())).remove("microservice-2")
    assert containers["microservice-2"].calls == []


def test_without_the_control_container_nothing_is_touched():
    containers = stack(dashboard="exited")
    with pytest.raises(OrchestratorError, match=r"the dashboard container.*is not running"):
        DockerOrchestrator(Client(*containers.values())).remove("microservice-2")
    assert all(container.calls == [] for container in containers.values())


@pytest.mark.parametrize(
    ("name", "status", "match"),
    [
        ("cache", {}, "only microservice and gateway instances scale in; `scalelab kill cache` stops it"),
        ("microservice-1", {"microservice_2": "exited"}, "last running microservice.*scalelab add microservice"),
        ("microservice-1", {"gateway_2": "paused"}, "gateway-2 is paused.*scalelab resume gateway-2"),
    ],
)
def test_refusals_touch_no_container(name, status, match):
    containers = stack(**status)
    with pytest.raises(OrchestratorError, match=match):
        DockerOrchestrator(Client(*containers.values())).remove(name)
    assert all(container.calls == [] for container in containers.values())


def test_an_unknown_instance_names_the_known_ones():
    with pytest.raises(UnknownInstance, match="'nosuch'; known: cache, dashboard, gateway-1"):
        DockerOrchestrator(Client(*stack().values())).remove("nosuch")
