"""The compose stack on a real Docker engine: the contract on :8000, the load engine, Prometheus, failover."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from scalelab import catalog
from scalelab.cli.main import cli
from scalelab.generate.dashboards import dashboards, panel_queries
from scalelab.orchestrators.docker import DockerOrchestrator

from ..browser.control_page import ControlPage
from ..chromium import ARTIFACTS, chromium
from ..contract import check_lab_contract
from ..integration.conftest import wait_for
from ..integration.load import run_load
from ..integration.test_observability import reads_containers
from .conftest import REPO, SERVICES, compose, compose_command

pytestmark = pytest.mark.compose
LB = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
LOADGEN = "http://127.0.0.1:8089"
DASHBOARD = "http://127.0.0.1:8050"
T = 10


def _token() -> dict[str, str]:
    return {"Authorization": requests.get(LB + "/token", timeout=T).json()["token"]}


def _prom(expr: str) -> list:
    return requests.get(PROMETHEUS + "/api/v1/query", params={"query": expr}, timeout=T).json()["data"]["result"]


def test_compose_file_is_accepted_by_the_compose_cli(compose_secrets: Path) -> None:
    if compose_command() is None:
        pytest.skip("no compose CLI (docker compose or docker-compose); .ci/run installs one")
    result = compose("config", "-q", check=False)
    assert result.returncode == 0, result.stderr


def test_the_lab_contract_through_port_8000(compose_stack: None) -> None:
    check_lab_contract("compose-key")


def test_prometheus_scrapes_every_instance(compose_stack: None) -> None:
    def all_up() -> bool:
        targets = requests.get(PROMETHEUS + "/api/v1/targets", timeout=T).json()["data"]["activeTargets"]
        health = {t["labels"]["instance"]: t["health"] for t in targets}
        # Only the started services: the dashboard target stays down until its container runs.
        return set(health) >= set(SERVICES) and all(health[name] == "up" for name in SERVICES)

    wait_for(all_up, timeout=30)
    assert _prom('up{instance="loadgen", service="loadgen"} == 1')


def _by_instance(expr: str) -> dict[str, float]:
    return {series["metric"]["instance"]: float(series["value"][1]) for series in _prom(expr)}


def test_prometheus_has_what_the_engine_counts_for_every_container(compose_stack: None) -> None:
    # The control page follows every container's stats through the Docker socket and exports them.
    def every_container() -> dict[str, float]:
        cpu = _by_instance("instance:container_cpu_seconds:rate10s")
        memory = _by_instance("instance:container_memory_bytes:sum")
        return memory if set(cpu) >= set(SERVICES) and set(memory) >= set(SERVICES) else {}

    memory = wait_for(every_container, timeout=30)
    assert all(memory[name] > 0 for name in SERVICES)
    services = {name: catalog.service(catalog.service_of(name)) for name in SERVICES}
    limited = {name: svc for name, svc in services.items() if svc.cpus and svc.memory_mb}
    assert limited, "the catalog gives the lab's containers limits"
    cores = _by_instance("instance:container_cpu_limit_cores:max")
    assert {name: cores.get(name) for name in limited} == {name: svc.cpus for name, svc in limited.items()}
    limits = _by_instance("instance:container_memory_limit_bytes:max")
    megabytes = {name: (limits.get(name) or 0) / 2**20 for name in limited}
    assert megabytes == {name: svc.memory_mb for name, svc in limited.items()}
    shares = _by_instance("instance:container_memory_limit_share:ratio")
    assert all(0 < shares[name] < 1 for name in limited), shares
    # Grafana's container panels read them too (the local stack's live check leaves these out).
    panels = list(panel_queries(dashboards()["scalelab-overview.json"]))
    missing = [title for title, expr in panels if reads_containers(expr) and not _prom(expr)]
    assert not missing, f"these return no data: {missing}"


def test_the_load_engine_sends_load_through_the_balancer(compose_stack: None) -> None:
    assert requests.get(LOADGEN + "/", timeout=T).status_code == 200
    form = {"user_count": 4, "spawn_rate": 4, "mix_process": 20, "rate_per_user": 10}
    started = requests.post(LOADGEN + "/swarm", data=form, timeout=T).json()
    assert started["success"] is True, started
    try:
        # Its --host is the balancer's service name: requests go through the compose network.
        def served() -> dict:
            stats = requests.get(LOADGEN + "/stats/requests", timeout=T).json()
            total = next(row for row in stats["stats"] if row["name"] == "Aggregated")
            return stats if total["num_requests"] > 20 else {}

        stats = wait_for(served, timeout=20)
        assert stats["fail_ratio"] == 0, stats.get("errors")
        wait_for(lambda: _prom('sum(rate(scalelab_loadgen_requests_total{instance="loadgen"}[5s])) > 0'), timeout=15)
    finally:
        assert requests.post(LOADGEN + "/stop", timeout=T).json()["success"] is True
    wait_for(lambda: requests.get(LOADGEN + "/stats/requests", timeout=T).json()["state"] == "stopped")


def test_the_dashboard_answers_on_8050_behind_its_password(compose_stack: None) -> None:
    env = dict(
        line.split("=", 1) for line in (REPO / ".env").read_text().splitlines() if "=" in line and line[0] != "#"
    )
    auth = ("scalelab", env["SCALELAB_DASHBOARD_PASSWORD"])
    assert requests.get(DASHBOARD + "/", timeout=T).status_code == 401
    assert requests.get(DASHBOARD + "/", auth=auth, timeout=T).status_code == 200

    def sees_the_stack() -> bool:
        # From inside the network: every container through the Docker API, figures from Prometheus.
        health = requests.get(DASHBOARD + "/health", timeout=T).json()
        return health["instances_seen"] == len(SERVICES) and health["figures_from"] == "prometheus"

    wait_for(sees_the_stack, timeout=15)
    wait_for(lambda: _prom('up{instance="dashboard", service="dashboard"} == 1'), timeout=15)


def test_the_dashboard_buttons_kill_and_start_a_container(compose_stack: None) -> None:
    env = dict(
        line.split("=", 1) for line in (REPO / ".env").read_text().splitlines() if "=" in line and line[0] != "#"
    )
    with chromium() as browser:
        context = browser.new_context(
            viewport={"width": 1400, "height": 1000},
            http_credentials={"username": "scalelab", "password": env["SCALELAB_DASHBOARD_PASSWORD"]},
        )
        control = ControlPage(context.new_page())
        control.page.goto(DASHBOARD + "/")
        control.page.wait_for_selector("[data-instance='gateway-2']")
        try:
            # The tile shows what the engine counts for the container, against the limits the catalog gives it.
            gateway = catalog.service("gateway")
            limits = f"of {gateway.cpus:g} core"
            memory = f"of {gateway.memory_mb} MB"
            control.wait_for(lambda: limits in control.detail("gateway-2") and memory in control.detail("gateway-2"),
                             timeout=30, what=f"gateway-2's CPU {limits} and memory {memory}")  # fmt: skip
            control.press("kill", "gateway-2")
            control.wait_state("gateway-2", "down", timeout=10)
            assert DockerOrchestrator().get("gateway-2").state == "stopped"
            control.press("start", "gateway-2")
            control.wait_state("gateway-2", "healthy", timeout=60)
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            control.page.screenshot(path=str(ARTIFACTS / "compose-dashboard.png"), full_page=True)
            context.close()
            if DockerOrchestrator().get("gateway-2").state == "stopped":
                DockerOrchestrator().start("gateway-2")


def test_scalelab_finds_the_containers_by_their_labels(compose_stack: None) -> None:
    names = {info.name for info in DockerOrchestrator().instances()}
    assert names == set(SERVICES)
    with pytest.raises(KeyError, match="no container of compose project 'scalelab'"):
        DockerOrchestrator().kill("not-ours")


def test_killing_a_gateway_container_under_load_fails_no_request(compose_stack: None) -> None:
    orchestrator = DockerOrchestrator()
    result = run_load(LB + "/data", _token(), 6, 6.0, lambda: orchestrator.kill("gateway-2"), "gateway_id")
    assert result.total > 50
    assert result.failed == 0, result.errors[:5]
    wait_for(lambda: _prom('up{instance="gateway-2"} == 0'), timeout=15)
    orchestrator.start("gateway-2")
    headers = _token()

    def traffic_back() -> bool:
        ids = {requests.get(LB + "/data", headers=headers, timeout=T).json()["gateway_id"] for _ in range(6)}
        return ids == {"1", "2"}

    wait_for(traffic_back, timeout=30)
    wait_for(lambda: _prom('up{instance="gateway-2"} == 1'), timeout=15)


def test_scalelab_add_puts_a_new_microservice_container_in_rotation(
    compose_stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCALELAB_ORCHESTRATOR", "auto")  # as a user types it: the CLI finds the stack
    assert cli(["--run-dir", str(tmp_path), "add", "microservice"]) == 0
    assert "added microservice-4" in capsys.readouterr().out
    headers = _token()

    def four_services() -> bool:
        ids = {requests.get(LB + "/process", headers=headers, timeout=T).json()["service_id"] for _ in range(12)}
        return ids == {"1", "2", "3", "4"}

    wait_for(four_services, timeout=30)
    assert cli(["--run-dir", str(tmp_path), "kill", "microservice-4"]) == 0


def test_scalelab_experiment_runs_inside_the_compose_network(
    compose_stack: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCALELAB_ORCHESTRATOR", "auto")  # as a user types it: the CLI finds the stack
    before = set((REPO / "results").glob("*-failover"))
    chosen = tmp_path / "my-results"
    code = cli(["--run-dir", str(tmp_path), "experiment", "failover", "--results-dir", str(chosen)])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    assert "in compose project 'scalelab', in its control container" in out and "passed  detection_seconds" in out
    reports = set((REPO / "results").glob("*-failover")) - before
    assert len(reports) == 1
    report = reports.pop()
    assert "Experiment: failover" in (report / "report.html").read_text()
    # --results-dir is honoured: the report made in the control container is copied there too.
    copy = chosen / report.name
    assert (copy / "report.html").read_text() == (report / "report.html").read_text()
    assert f"Report: {copy}/report.html" in out
    shutil.rmtree(report)  # the suite leaves no results of its own in the user's folder
    states = {info.name: info.state for info in DockerOrchestrator().instances()}
    assert states["gateway-2"] == states["microservice-2"] == "running"  # the experiment put them back
