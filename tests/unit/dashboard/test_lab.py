"""The Lab's /metrics carries the containers' own figures when, and only when, its stack runs in containers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dashboard import lab as lab_module
from dashboard.actionlog import Action
from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from scalelab.containerstats import ContainerStatsCollector
from scalelab.orchestrators.docker import DockerOrchestrator
from scalelab.orchestrators.local import LocalOrchestrator
from scalelab.stack import Tile
from services.kit.config import ConfigError, load_config
from tests.unit.standins import closed_port
from tests.unit.support import wait_for


@pytest.fixture
def config(tmp_path: Path) -> DashboardConfig:
    """The page's settings over an empty run directory."""
    return load_config(DashboardConfig, {"run_dir": str(tmp_path)}, environ={})


@pytest.fixture
def compose_orchestrator() -> Iterator[DockerOrchestrator]:
    """The compose orchestrator, on a client that is never called (no engine is needed to build the Lab)."""
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{closed_port()}", version="1.41")
    yield DockerOrchestrator(client=client)
    client.close()


def test_a_stack_of_containers_gets_the_engines_figures_on_the_pages_metrics(
    config: DashboardConfig, compose_orchestrator: DockerOrchestrator
):
    assert compose_orchestrator.limits_instances
    lab = Lab(config, compose_orchestrator, lambda: "t", registry=CollectorRegistry())
    assert isinstance(lab.container_stats, ContainerStatsCollector)
    lab.stop()
    assert list(lab.container_stats.collect()) == []  # stopped with the Lab: it reads the engine no more


def test_local_processes_keep_to_their_process_figures(config: DashboardConfig, tmp_path: Path):
    registry = CollectorRegistry()
    lab = Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=registry)
    assert lab.container_stats is None
    assert b"scalelab_container_" not in generate_latest(registry)


def test_a_kill_pressed_while_a_sample_is_read_is_not_undone_by_that_sample(config: DashboardConfig, tmp_path: Path):
    lab = Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())
    before = [Tile("gateway-2", "gateway", "http://127.0.0.1:1", "healthy", "running")]

    def tiles_read_before_the_kill(instances, pools):  # the sample read the stack, then the kill landed
        lab._show_now("gateway-2", "stopped")
        return before

    lab.stack.tiles = tiles_read_before_the_kill  # type: ignore[method-assign]
    lab.stack.pools = lambda instances: {}  # type: ignore[method-assign]
    [tile] = lab.sample_once().tiles
    assert (tile.state, tile.process) == ("down", "stopped")
    lab.stack.tiles = lambda instances, pools: before  # type: ignore[method-assign]
    [tile] = lab.sample_once().tiles  # the next sample reads the stack afresh
    assert tile.state == "healthy"
    lab.stop()


def test_an_unwatched_idle_stack_is_read_at_the_idle_interval_and_a_page_brings_the_full_rate_back_at_once(
    config: DashboardConfig, tmp_path: Path
):
    lab = Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())
    assert lab.interval() == config.refresh_seconds  # just started: a page usually opens now
    lab._watched_at -= lab_module.WATCH_SECONDS + 1
    assert lab.interval() == config.idle_refresh_seconds
    lab._wake.clear()
    lab.watched()
    assert lab._wake.is_set()  # the sampler reads the stack now, not at the end of its idle wait
    assert lab.interval() == config.refresh_seconds


@pytest.mark.parametrize("state", ["spawning", "running"])
def test_running_load_keeps_the_full_rate_with_no_page_open(config: DashboardConfig, tmp_path: Path, state: str):
    lab = Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())
    lab._watched_at -= lab_module.WATCH_SECONDS + 1
    lab.status.load = {"state": state, "user_count": 8}
    assert lab.interval() == config.refresh_seconds
    lab.status.load = {"state": "stopped", "user_count": 0}
    assert lab.interval() == config.idle_refresh_seconds


def test_an_idle_interval_below_the_refresh_interval_is_refused(tmp_path: Path):
    environ = {"DASHBOARD_REFRESH_SECONDS": "2", "DASHBOARD_IDLE_REFRESH_SECONDS": "1"}
    with pytest.raises(ConfigError, match="DASHBOARD_IDLE_REFRESH_SECONDS"):
        load_config(DashboardConfig, {"run_dir": str(tmp_path)}, environ=environ)


def test_a_press_can_wait_for_its_action_so_that_its_answer_shows_the_result(config: DashboardConfig, tmp_path: Path):
    lab = Lab(config, LocalOrchestrator(tmp_path), lambda: "t", registry=CollectorRegistry())

    def outcome(action: Action) -> str:
        return next(a.outcome for a in lab.actions.recent() if a.id == action.id)

    quick = lab._submit("kill", "gateway-2", lambda _action: "killed")
    assert lab.settle(quick, timeout=5) and outcome(quick) == "ok"
    slow = lab._submit("start", "gateway-2", lambda _action: time.sleep(0.5) or "started")
    assert not lab.settle(slow, timeout=0.05) and outcome(slow) == "pending"
    wait_for(lambda: outcome(slow) == "ok", what="the slow action to finish")
    assert lab.settle(slow, timeout=0)  # done: nothing left to wait for
    wait_for(lambda: not lab._settling, what="the finished actions' futures to go")
