"""The lab on Docker Swarm: the contract through 127.0.0.1:8000, scaling through the swarm, failover, teardown."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from scalelab import catalog
from scalelab.generate.stack import NETWORK, STACK
from scalelab.orchestrators import loopback
from scalelab.orchestrators.swarm import NAMESPACE_LABEL, SwarmOrchestrator

from ..compose.conftest import docker_client
from ..contract import check_lab_contract
from ..integration.conftest import wait_for
from ..integration.load import run_load
from .conftest import scalelab

pytestmark = pytest.mark.swarm
LB = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
T = 10
# Everything but Grafana, which has no image on machines without registry access.
INSTANCES = {name for svc in catalog.SERVICES if svc.name != "grafana" for name in catalog.instance_names(svc)}


def _token() -> dict[str, str]:
    return {"Authorization": requests.get(LB + "/token", timeout=T).json()["token"]}


def _prom(expr: str) -> list:
    return requests.get(PROMETHEUS + "/api/v1/query", params={"query": expr}, timeout=T).json()["data"]["result"]


def test_the_lab_contract_through_port_8000(swarm_stack: None) -> None:
    check_lab_contract("swarm-key")


def test_scalelab_status_names_every_task_by_its_slot(swarm_stack: None, swarm_run_dir: Path) -> None:
    status = scalelab(swarm_run_dir, "status")
    assert status.returncode == 0, status.stderr
    listed = {line.split()[0] for line in status.stdout.splitlines()[1:] if line.strip()}
    assert listed >= INSTANCES


def test_prometheus_shows_cpu_and_memory_for_every_instance(swarm_stack: None) -> None:
    lab = INSTANCES - {"prometheus"}

    def every_instance() -> bool:
        cpu = {r["metric"]["instance"] for r in _prom("instance:process_cpu_seconds:rate10s")}
        memory = {r["metric"]["instance"] for r in _prom("instance:process_resident_memory_bytes:sum")}
        return cpu >= lab and memory >= lab

    wait_for(every_instance, timeout=60, what="CPU and memory of every instance in Prometheus")


def _from_another_machine(port: int) -> int:
    """Connect to ``port`` from a network namespace on a veth link, as a neighbour would; return 0 on success.

    Its packets come in on an interface that is not loopback and are forwarded to the task, the
    path a lab-room machine's connection takes.
    """
    if shutil.which("ip") is None:
        pytest.fail("iproute2's `ip` is missing (apt-get install iproute2; .ci/run installs it)")
    namespace, host_end, far_end = "scalelab-probe", "slprobe0", "slprobe1"
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    # A documentation range this machine does not use already (its own network may be one).
    prefix = next(p for p in ("198.51.100", "203.0.113", "192.0.2", "100.127.253") if f"{p}." not in routes)
    steps = [
        ["ip", "netns", "add", namespace],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", far_end],
        ["ip", "link", "set", far_end, "netns", namespace],
        ["ip", "addr", "add", f"{prefix}.1/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", namespace, "addr", "add", f"{prefix}.2/30", "dev", far_end],
        ["ip", "-n", namespace, "link", "set", far_end, "up"],
    ]
    try:
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.fail(f"cannot make a network namespace ({' '.join(step)}: {done.stderr.strip()}); it needs root")
        probe = f"import socket,sys; s=socket.socket(); s.settimeout(3); sys.exit(s.connect_ex(('{prefix}.1', {port})))"
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", probe]).returncode
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def test_the_published_ports_answer_on_loopback_only(swarm_stack: None) -> None:
    published = {svc.ports[0] for svc in catalog.SERVICES if svc.published and svc.name != "grafana"}
    assert set(loopback.guarded_ports()) == published
    assert _from_another_machine(8000) != 0, "the entry answered a connection from the network"
    assert requests.get(LB + "/health", timeout=T).status_code == 200
    # Without the rules the same connection gets through: the check above can fail.
    loopback.open_to_network()
    try:
        assert _from_another_machine(8000) == 0
    finally:
        loopback.close_to_network(published)


def test_scalelab_add_gateway_gives_a_third_gateway_serving_within_15_s(swarm_stack: None, swarm_run_dir: Path) -> None:
    added = scalelab(swarm_run_dir, "add", "gateway")
    assert added.returncode == 0, added.stderr
    assert "added gateway-3" in added.stdout
    headers = _token()

    def three_gateways() -> bool:
        ids = {requests.get(LB + "/data", params={"key": "k"}, headers=headers, timeout=T).json()["gateway_id"]
               for _ in range(9)}  # fmt: skip
        return ids == {"1", "2", "3"}

    wait_for(three_gateways, timeout=15, what="gateway-3 serving through the balancer")
    removed = scalelab(swarm_run_dir, "remove", "gateway-3")
    assert removed.returncode == 0, removed.stdout + removed.stderr

    def pool() -> set[str]:
        return {backend["name"] for backend in requests.get(LB + "/lb/status", timeout=T).json()["backends"]}

    wait_for(lambda: "gateway-3" not in pool(), timeout=15, what="gateway-3 gone from the balancer's pool")


def test_killing_gateway_2_under_load_fails_no_request(swarm_stack: None, swarm_run_dir: Path) -> None:
    orchestrator = SwarmOrchestrator()
    result = run_load(LB + "/data", _token(), 6, 8.0, lambda: orchestrator.kill("gateway-2"), "gateway_id")
    assert result.total > 50
    assert result.failed == 0, result.errors[:5]
    started = scalelab(swarm_run_dir, "start", "gateway-2")  # waits for the swarm to replace the task
    assert started.returncode == 0, started.stdout + started.stderr
    headers = _token()

    def both_gateways() -> bool:
        ids = {requests.get(LB + "/data", params={"key": "k"}, headers=headers, timeout=T).json()["gateway_id"]
               for _ in range(6)}  # fmt: skip
        return ids == {"1", "2"}

    wait_for(both_gateways, timeout=30, what="gateway-2 back in rotation")


def test_pause_and_resume_act_on_a_task(swarm_stack: None, swarm_run_dir: Path) -> None:
    assert scalelab(swarm_run_dir, "pause", "microservice-1").returncode == 0
    headers = _token()
    ids = {requests.get(LB + "/process", headers=headers, timeout=T).json()["service_id"] for _ in range(8)}
    assert ids <= {"2", "3"}
    resumed = scalelab(swarm_run_dir, "resume", "microservice-1")
    assert resumed.returncode == 0, resumed.stderr


def test_down_leaves_nothing_behind(swarm_stack: None, swarm_run_dir: Path) -> None:
    removed = scalelab(swarm_run_dir, "down", "--engine", "swarm")
    assert removed.returncode == 0, removed.stderr
    client = docker_client()
    label = {"label": f"{NAMESPACE_LABEL}={STACK}"}
    assert client.services.list(filters=label) == []
    assert client.containers.list(all=True, filters=label) == []
    assert [n.name for n in client.networks.list() if n.name == f"{STACK}_{NETWORK}"] == []
    assert client.configs.list(filters=label) == []
    assert client.volumes.list(filters=label) == []
    assert loopback.guarded_ports() == []
    done = subprocess.run(["docker", "stack", "ls"], capture_output=True, text=True)
    assert STACK not in done.stdout.split()
