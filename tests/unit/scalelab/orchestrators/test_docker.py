"""DockerOrchestrator's view of the containers, on a fake Docker client (no engine needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scalelab.orchestrators import docker as docker_module
from scalelab.orchestrators import docker_in_network
from scalelab.orchestrators import find_orchestrator as pick_orchestrator
from scalelab.orchestrators.docker import PROJECT_LABEL, SERVICE_LABEL, DockerOrchestrator


@dataclass
class FakeContainer:
    """The parts of a docker SDK container the orchestrator reads."""

    service: str
    status: str = "running"
    env: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"scalelab-{self.service}-1"

    @property
    def labels(self) -> dict[str, str]:
        return {PROJECT_LABEL: "scalelab", SERVICE_LABEL: self.service}

    @property
    def attrs(self) -> dict[str, Any]:
        return {"State": {"Health": {"Status": "healthy"}}, "Config": {"Env": self.env}}


class FakeContainers:
    """``client.containers``: lists the fake containers."""

    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = containers

    def list(self, **_: Any) -> list[FakeContainer]:
        return self.containers


class FakeClient:
    """A docker SDK client holding a few of the compose stack's containers."""

    def __init__(self) -> None:
        self.containers = FakeContainers(
            [
                FakeContainer("load-balancer"),
                FakeContainer("gateway-2"),
                FakeContainer("loadgen"),
                FakeContainer("dashboard"),
                FakeContainer("microservice-4", env=["MICROSERVICE_PORT=5103", "SCALELAB_INSTANCE=microservice-4"]),
            ]
        )


def _addresses(orchestrator: DockerOrchestrator) -> dict[str, str]:
    return {info.name: f"{info.host}:{info.port}" for info in orchestrator.instances()}


def test_from_the_host_published_instances_are_on_loopback() -> None:
    assert _addresses(DockerOrchestrator(FakeClient())) == {
        "load-balancer": "127.0.0.1:8000",
        "gateway-2": "gateway-2:5003",
        "loadgen": "127.0.0.1:8089",
        "dashboard": "127.0.0.1:8050",
        "microservice-4": "microservice-4:5103",
    }


def test_inside_the_network_every_instance_is_its_service_name_on_its_own_port() -> None:
    assert _addresses(DockerOrchestrator(FakeClient(), in_network=True)) == {
        "load-balancer": "load-balancer:8000",
        "gateway-2": "gateway-2:5003",
        "loadgen": "loadgen:8089",
        "dashboard": "dashboard:8050",
        "microservice-4": "microservice-4:5103",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("True", True), ("0", False), ("false", False), ("", False), (None, False)],
)
def test_docker_in_network_reads_the_dashboard_variable(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"DASHBOARD_DOCKER_IN_NETWORK": value}
    assert docker_in_network(environ) is expected


def test_pick_orchestrator_passes_in_network_to_the_docker_orchestrator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docker_module, "_client", FakeClient)
    inside = pick_orchestrator(str(tmp_path), {"SCALELAB_ORCHESTRATOR": "docker", "DASHBOARD_DOCKER_IN_NETWORK": "1"})
    outside = pick_orchestrator(str(tmp_path), {"SCALELAB_ORCHESTRATOR": "docker"})
    assert isinstance(inside, DockerOrchestrator) and inside.in_network
    assert isinstance(outside, DockerOrchestrator) and not outside.in_network


def _tar(*members: tuple[str, bytes]) -> list[bytes]:
    """Return a tar stream (as the SDK's get_archive gives it, in chunks) holding ``members``."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members:
            entry = tarfile.TarInfo(name)
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
    data = buffer.getvalue()
    return [data[:100], data[100:]]


class _Control:
    """The control container as fetch_results uses it."""

    status = "running"
    labels = {"com.docker.compose.project": "scalelab", "com.docker.compose.service": "dashboard"}
    name = "scalelab_dashboard_1"

    def __init__(self, stream: list[bytes]) -> None:
        self.stream = stream

    def get_archive(self, path: str) -> tuple[list[bytes], dict]:
        return self.stream, {"name": path.rsplit("/", 1)[1]}


class _Client:
    def __init__(self, container: _Control) -> None:
        self.containers = self
        self.container = container

    def list(self, **_: object) -> list[_Control]:
        return [self.container]


def test_a_report_is_copied_out_of_the_control_container(tmp_path):
    from scalelab.orchestrators.docker import DockerOrchestrator

    stream = _tar(("20261202-failover/report.html", b"<html>"), ("20261202-failover/summary.json", b"{}"))
    copy = DockerOrchestrator(_Client(_Control(stream))).fetch_results("/app/results/20261202-failover", tmp_path)
    assert copy == tmp_path / "20261202-failover"
    assert (copy / "report.html").read_bytes() == b"<html>"


def test_a_path_out_of_the_destination_is_refused(tmp_path):
    from scalelab.orchestrators.base import OrchestratorError
    from scalelab.orchestrators.docker import DockerOrchestrator

    stream = _tar(("../escaped.txt", b"x"))
    with pytest.raises(OrchestratorError, match=r"refusing '\.\./escaped\.txt'"):
        DockerOrchestrator(_Client(_Control(stream))).fetch_results("/app/results/x", tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
