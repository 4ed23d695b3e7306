"""The local orchestrator's scale-in rules, on a hand-written state: no instance process is started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalelab import catalog
from scalelab.orchestrators import LocalOrchestrator, OrchestratorError, UnknownInstance
from scalelab.orchestrators.local import process_identity, process_state, yield_cpu
from tests.unit.support import wait_for


class Sleepers:
    """Stand-in instance processes (``sleep``), each in its own session as the orchestrator starts them."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> int:
        process = subprocess.Popen(["sleep", "60"], start_new_session=True)
        self.processes.append(process)
        return process.pid


@pytest.fixture
def sleepers() -> Iterator[Sleepers]:
    """Start stand-in processes on demand; kill the ones this test started afterwards."""
    made = Sleepers()
    yield made
    for process in made.processes:
        process.kill()
        process.wait()


def write_state(run_dir: Path, pids: dict[str, int | None]) -> dict:
    """Write a stack of two gateways and three microservices, with the given pids (None: stopped)."""
    members = "microservice-1=http://127.0.0.1:1,microservice-2=http://127.0.0.1:2,microservice-3=http://127.0.0.1:3"
    instances = {
        "cache": {"service": "cache", "port": 20, "env": {}},
        **{f"microservice-{n}": {"service": "microservice", "port": n, "env": {}} for n in (1, 2, 3)},
        **{
            f"gateway-{n}": {"service": "gateway", "port": 10 + n, "env": {"GATEWAY_MICROSERVICES": members}}
            for n in (1, 2)
        },
    }
    for name, entry in instances.items():
        entry["pid"] = pids.get(name)
    state = {"port_offset": 0, "secrets": {"jwt_secret": "j", "admin_token": "a"}, "instances": instances}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "state.json").write_text(json.dumps(state))
    return state


def saved(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def test_removing_an_unknown_instance_names_the_known_ones(tmp_path):
    write_state(tmp_path, {})
    with pytest.raises(UnknownInstance, match="no instance named 'nosuch'; known: cache, microservice-1"):
        LocalOrchestrator(tmp_path).remove("nosuch")


def test_without_a_stack_remove_says_so(tmp_path):
    with pytest.raises(UnknownInstance, match=r"no stack has been started from .*scalelab up"):
        LocalOrchestrator(tmp_path).remove("microservice-1")


def test_only_gateways_and_microservices_scale_in(tmp_path):
    before = write_state(tmp_path, {})
    with pytest.raises(OrchestratorError, match=r"cannot remove cache: only microservice and gateway .*scalelab kill"):
        LocalOrchestrator(tmp_path).remove("cache")
    assert saved(tmp_path) == before


def test_the_last_running_instance_of_a_service_is_not_removed(tmp_path, sleepers):
    # microservice-1 runs, the others are stopped: it is the last one running.
    before = write_state(tmp_path, {"microservice-1": sleepers.start()})
    with pytest.raises(OrchestratorError, match=r"last running microservice.*scalelab add microservice"):
        LocalOrchestrator(tmp_path).remove("microservice-1")
    assert saved(tmp_path) == before
    assert process_state(before["instances"]["microservice-1"]["pid"]) == "running"


def test_no_instance_is_removed_while_a_balancing_peer_is_paused(tmp_path, sleepers):
    gateway = sleepers.start()
    os.kill(gateway, signal.SIGSTOP)
    wait_for(lambda: process_state(gateway) == "paused", what="the stand-in gateway to stop")
    before = write_state(tmp_path, {"microservice-2": sleepers.start(), "gateway-1": gateway})
    try:
        with pytest.raises(OrchestratorError, match=r"gateway-1 is paused.*scalelab resume gateway-1"):
            LocalOrchestrator(tmp_path).remove("microservice-1")
    finally:
        os.kill(gateway, signal.SIGCONT)
    assert saved(tmp_path) == before


def test_a_stopped_instance_is_forgotten_and_leaves_the_peers_environment(tmp_path, sleepers):
    # microservice-1 is stopped, microservice-2 runs; no gateway runs, so there is nobody to withdraw from.
    write_state(tmp_path, {"microservice-2": sleepers.start()})
    LocalOrchestrator(tmp_path).remove("microservice-1")
    state = saved(tmp_path)
    assert "microservice-1" not in state["instances"]
    for gateway in ("gateway-1", "gateway-2"):
        assert state["instances"][gateway]["env"]["GATEWAY_MICROSERVICES"] == (
            "microservice-2=http://127.0.0.1:2,microservice-3=http://127.0.0.1:3"
        )


def test_a_recorded_pid_now_owned_by_another_process_is_never_signalled(tmp_path, sleepers):
    # As after a reboot: the state names a pid, but the process there is not the one that was started.
    stranger = sleepers.start()
    state = write_state(tmp_path, {"cache": stranger})
    state["instances"]["cache"]["identity"] = "another-boot:12345"
    (tmp_path / "state.json").write_text(json.dumps(state))
    orchestrator = LocalOrchestrator(tmp_path)
    assert orchestrator.get("cache").state == "stopped"
    assert orchestrator.get("cache").pid is None
    assert orchestrator.down() == []
    assert process_state(stranger) == "running"


def test_the_process_a_stack_started_is_recognised_and_stopped(tmp_path, sleepers):
    own = sleepers.start()
    state = write_state(tmp_path, {"cache": own})
    state["instances"]["cache"]["identity"] = process_identity(own)
    (tmp_path / "state.json").write_text(json.dumps(state))
    orchestrator = LocalOrchestrator(tmp_path)
    assert orchestrator.get("cache").pid == own
    assert orchestrator.down() == ["cache"]
    sleepers.processes[-1].wait(5)
    assert process_state(own) == "stopped"


def test_the_state_holding_the_secrets_is_readable_by_its_owner_only(tmp_path):
    write_state(tmp_path, {})
    LocalOrchestrator(tmp_path).down()  # rewrites the state under its lock
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600


def test_a_yielding_process_runs_at_the_catalogs_niceness_on_every_thread_it_has_and_makes():
    program = (
        "import threading, time; time.sleep(0.3); threading.Thread(target=time.sleep, args=(5,)).start(); time.sleep(5)"
    )
    child = subprocess.Popen([sys.executable, "-c", program], start_new_session=True)  # as instances start
    try:
        yield_cpu(child.pid)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == catalog.YIELDING_NICE
        autogroup = Path(f"/proc/{child.pid}/autogroup")
        if autogroup.exists() and Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
            assert autogroup.read_text().split()[-1] == str(catalog.YIELDING_NICE)  # "/autogroup-N nice 10"
        time.sleep(1)  # the thread it starts after
        threads = [int(t.name) for t in Path(f"/proc/{child.pid}/task").iterdir()]
        assert len(threads) == 2
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in threads} == {catalog.YIELDING_NICE}
    finally:
        child.kill()
        child.wait()
    yield_cpu(child.pid)  # gone: nothing to set, no error


def test_the_services_and_the_load_engine_yield_and_the_page_and_prometheus_do_not():
    yielding = {svc.name for svc in catalog.SERVICES if svc.yields_cpu}
    assert {"gateway", "cache", "load-balancer", "loadgen"} <= yielding
    assert not yielding & {"dashboard", "prometheus", "grafana"}
