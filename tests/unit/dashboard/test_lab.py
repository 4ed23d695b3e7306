"""The Lab's /metrics carries the containers' own figures when, and only when, its stack runs in containers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dashboard.config import DashboardConfig
from dashboard.lab import Lab
from scalelab.containerstats import ContainerStatsCollector
from scalelab.orchestrators.docker import DockerOrchestrator
from scalelab.orchestrators.local import LocalOrchestrator
from scalelab.stack import Tile
from services.kit.config import load_config
from tests.unit.standins import closed_port


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
