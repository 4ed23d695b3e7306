"""The `scalelab` command against real processes: status, clean failures, scaling out."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import requests

from scalelab.cli.main import cli
from scalelab.orchestrators import LocalOrchestrator
from scalelab.topology import lab_ports

from .conftest import REQUEST_TIMEOUT, Stack, free_offset, started_stack, wait_for
from .load import run_load

PORTS = lab_ports()


def test_status_lists_every_instance_healthy(healthy_stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--run-dir", str(healthy_stack.orchestrator.run_dir), "status"]) == 0
    out = capsys.readouterr().out
    for name in PORTS:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert "running" in line and line.rstrip().endswith("healthy"), line


def test_a_taken_port_is_named_and_nothing_is_left_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    offset = free_offset()
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the port may be in TIME_WAIT
        blocker.bind(("127.0.0.1", PORTS["cache"] + offset))
        blocker.listen()
        code = cli(["--run-dir", str(tmp_path), "up", "--detach", "--port-offset", str(offset)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"cache needs port {PORTS['cache'] + offset}" in err
    assert LocalOrchestrator(tmp_path).running() == []


def test_a_failed_start_names_the_instance_and_stops_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALELAB_SERVER", "no-such-server")  # every WSGI service refuses to start
    offset = free_offset()
    assert cli(["--run-dir", str(tmp_path), "up", "--detach", "--port-offset", str(offset)]) == 1
    err = capsys.readouterr().err
    assert "database" in err and "exited while starting" in err and "no-such-server" in err
    assert LocalOrchestrator(tmp_path).running() == []
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", PORTS["load-balancer"] + offset))  # the balancer was stopped too


def test_add_puts_a_new_microservice_in_rotation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with started_stack(tmp_path) as stack:
        assert cli(["--run-dir", str(tmp_path), "add", "microservice"]) == 0
        assert "added microservice-4" in capsys.readouterr().out
        headers = stack.auth()

        def seen_all_four() -> bool:
            ids = {
                requests.get(stack.lb + "/process", headers=headers, timeout=REQUEST_TIMEOUT).json()["service_id"]
                for _ in range(12)
            }
            return ids == {"1", "2", "3", "4"}

        wait_for(seen_all_four)
        targets = json.loads((tmp_path / "prometheus" / "targets" / "scalelab.json").read_text())
        assert "microservice-4" in {group["labels"]["instance"] for group in targets}

        def scraped() -> bool:
            answer = requests.get(
                stack.url("prometheus") + "/api/v1/query",
                params={"query": 'up{instance="microservice-4"} == 1'},
                timeout=REQUEST_TIMEOUT,
            ).json()
            return bool(answer["data"]["result"])

        wait_for(scraped, timeout=15)
        assert cli(["--run-dir", str(tmp_path), "kill", "microservice-4"]) == 0
        assert "killed microservice-4" in capsys.readouterr().out
        assert cli(["--run-dir", str(tmp_path), "kill", "nosuch"]) == 1
        assert "no instance named 'nosuch'" in capsys.readouterr().err


def test_without_prometheus_the_stack_says_so_once_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCALELAB_PROMETHEUS_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no prometheus binary to be found
    run_dir = tmp_path / "run"
    with started_stack(run_dir) as stack:
        out = capsys.readouterr().out
        assert out.count("Prometheus not found") == 1
        assert "prometheus" not in [info.name for info in stack.orchestrator.instances()]
        assert requests.get(stack.lb + "/health", timeout=REQUEST_TIMEOUT).status_code == 200


def test_the_autoscaler_adds_a_microservice_under_load_and_removes_it_after(
    healthy_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = str(healthy_stack.orchestrator.run_dir)
    microservices = ["microservice-1", "microservice-2", "microservice-3"]

    def running() -> list[str]:
        infos = healthy_stack.orchestrator.instances()
        return sorted(info.name for info in infos if info.service == "microservice" and info.state == "running")

    before = {
        name: requests.get(
            healthy_stack.url(name) + "/control", headers=healthy_stack.admin(), timeout=REQUEST_TIMEOUT
        ).json()["knobs"]["service_time_ms"]["value"]
        for name in microservices
    }
    for name in microservices:
        healthy_stack.control(name, service_time_ms=300)
    try:
        assert cli(["--run-dir", run_dir, "autoscale", "on", "--target", "0.5", "--max", "4", "--cooldown", "1"]) == 0
        assert "autoscaler: on, microservice on in_flight, target 0.5 per instance, 3 to 4" in capsys.readouterr().out
        # Eight clients on 300 ms calls: about 2.7 in flight per instance, far above the target.
        result = run_load(
            healthy_stack.lb + "/process",
            healthy_stack.auth(),
            clients=8,
            seconds=6,
            during=lambda: wait_for(lambda: len(running()) == 4, timeout=8, what="a fourth microservice"),
            field_name="service_id",
        )
        assert result.failed == 0, result.errors[:3]
        assert "4" in result.served_by  # the new instance took its share
        # A decision is recorded once its change is done (a removal drains first): wait for the record itself.
        page = healthy_stack.url("dashboard") + "/autoscaler"

        def scaled_in() -> bool:
            decisions = requests.get(page, timeout=REQUEST_TIMEOUT).json()["decisions"]
            return any(decision["label"] == "scale-in microservice 4→3" for decision in decisions)

        wait_for(scaled_in, timeout=20, what="the scale-in after the load")
        assert len(running()) == 3
        assert cli(["--run-dir", run_dir, "autoscale", "status"]) == 0
        out = capsys.readouterr().out
        assert "scale-out microservice 3→4 (in_flight" in out and "scale-in microservice 4→3 (in_flight 0" in out
    finally:
        assert cli(["--run-dir", run_dir, "autoscale", "off"]) == 0
        for name, value in before.items():
            healthy_stack.control(name, service_time_ms=value)
    assert "autoscaler: off" in capsys.readouterr().out
    assert running() == microservices
