"""Actions on the stack: carried out through the orchestrator and /control, recorded, and undone afterwards."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from scalelab.experiments.spec import Action
from scalelab.experiments.timeline import Executor, Undo, run_timeline, wait_settled
from scalelab.stack import StackClient
from services.kit.auth import ADMIN_HEADER
from tests.unit.standins import CannedServer, instance

from .support import FakeOrchestrator


@pytest.fixture
def gateways(serve: Callable[[], CannedServer]) -> list[CannedServer]:
    """Two gateways whose /control says coalescing is on."""
    servers = [serve(), serve()]
    for server in servers:
        server.json("GET", "/control", {"knobs": {"coalescing": {"value": True}, "cache_enabled": {"value": True}}})
        server.json("PUT", "/control", {"changed": {}})
    return servers


def make(gateways: list[CannedServer]) -> tuple[FakeOrchestrator, StackClient, Executor]:
    orchestrator = FakeOrchestrator(
        [
            instance("gateway-1", "gateway", gateways[0].port),
            instance("gateway-2", "gateway", gateways[1].port),
            instance("microservice-1", "microservice", 1),
            instance("loadgen", "loadgen", 2),
        ]
    )
    stack = StackClient(orchestrator, admin_token=lambda: "secret", timeout=1.0)
    return orchestrator, stack, Executor(stack, Undo(stack))


def puts(server: CannedServer) -> list[bytes]:
    return [seen.body for seen in server.seen if seen.method == "PUT"]


def test_set_on_a_service_changes_every_running_instance_with_the_admin_token(gateways: list[CannedServer]) -> None:
    _, _, executor = make(gateways)
    executed = executor.run(Action("set", "gateway", {"coalescing": False}))
    assert executed.ok and executed.instances == ("gateway-1", "gateway-2")
    assert executed.label == "set gateway coalescing=False"
    assert executed.started <= executed.finished
    for server in gateways:
        assert puts(server) == [b'{"coalescing": false}']
        assert all(seen.headers[ADMIN_HEADER] == "secret" for seen in server.seen)


def test_instance_actions_go_through_the_orchestrator(gateways: list[CannedServer]) -> None:
    orchestrator, _, executor = make(gateways)
    assert executor.run(Action("kill", "gateway-2")).instances == ("gateway-2",)
    assert executor.run(Action("add", "microservice")).instances == ("microservice-2",)
    assert orchestrator.calls == [("kill", "gateway-2"), ("add", "microservice")]


def test_a_refused_action_is_recorded_not_raised(gateways: list[CannedServer]) -> None:
    _, _, executor = make(gateways)
    unknown = executor.run(Action("set", "nosuch", {"a": 1}))
    assert unknown.error.startswith("no running instance or service named 'nosuch'; services: ")
    assert "gateway" in unknown.error
    assert "no instance named 'gateway-9'" in executor.run(Action("kill", "gateway-9")).error
    gateways[0].json("PUT", "/control", {"error": "unknown knob(s) ['a']"}, status=400)
    refused = executor.run(Action("set", "gateway-1", {"a": 1}))
    assert "refused PUT /control (400): unknown knob(s) ['a']" in refused.error


def test_undo_starts_killed_removes_added_and_sets_knobs_back(gateways: list[CannedServer]) -> None:
    orchestrator, _, executor = make(gateways)
    undo = executor.undo
    executor.run(Action("set", "gateway", {"coalescing": False}))
    for server in gateways:  # as the gateways now report it
        server.json("GET", "/control", {"knobs": {"coalescing": {"value": False}, "cache_enabled": {"value": True}}})
    executor.run(Action("set", "gateway", {"coalescing": False}))  # the first value is the one to restore
    executor.run(Action("kill", "gateway-2"))
    executor.run(Action("pause", "microservice-1"))
    executor.run(Action("add", "microservice"))
    orchestrator.calls.clear()
    assert undo.restore() == []
    assert sorted(orchestrator.calls) == [
        ("remove", "microservice-2"),
        ("resume", "microservice-1"),
        ("start", "gateway-2"),
    ]
    for server in gateways:
        assert puts(server)[-1] == b'{"coalescing": true}'


def test_a_killed_instance_gets_the_knobs_it_had_back(gateways: list[CannedServer]) -> None:
    _, _, executor = make(gateways)
    gateways[1].json("GET", "/control", {"knobs": {"coalescing": {"value": False}, "cache_enabled": {"value": True}}})
    executor.run(Action("kill", "gateway-2"))
    # Started again, it comes back with its configured values.
    gateways[1].json("GET", "/control", {"knobs": {"coalescing": {"value": True}, "cache_enabled": {"value": True}}})
    assert executor.undo.restore() == []
    assert puts(gateways[1]) == [b'{"coalescing": false}']
    assert puts(gateways[0]) == []


def test_undo_says_what_it_could_not_bring_back(gateways: list[CannedServer]) -> None:
    orchestrator, _, executor = make(gateways)
    assert executor.run(Action("add", "microservice")).ok
    executor.undo.states["microservice-2"] = "running"  # as if it had been there before the experiment
    executor.run(Action("remove", "microservice-1"))
    assert executor.undo.restore() == [
        "microservice-1 was removed and cannot come back under its name; `scalelab add` makes a new one"
    ]
    assert orchestrator.calls.count(("add", "microservice")) == 1  # none to bring microservice-1 back


def test_the_timeline_runs_each_action_at_its_offset(gateways: list[CannedServer]) -> None:
    orchestrator, _, executor = make(gateways)
    done: list = []
    t0 = time.time()
    actions = [Action("kill", "gateway-2", at=0.0), Action("start", "gateway-2", at=0.2)]
    run_timeline(executor, actions, t0, done, threading.Event())
    assert [executed.label for executed in done] == ["kill gateway-2", "start gateway-2"]
    assert done[0].offset == pytest.approx(0.0, abs=0.05)
    assert done[1].offset == pytest.approx(0.2, abs=0.05)
    assert orchestrator.calls == [("kill", "gateway-2"), ("start", "gateway-2")]


def test_a_stopped_timeline_carries_out_nothing_more(gateways: list[CannedServer]) -> None:
    _, _, executor = make(gateways)
    stop = threading.Event()
    stop.set()
    done: list = []
    run_timeline(executor, [Action("kill", "gateway-2", at=5.0)], time.time(), done, stop)
    assert done == []


def test_settled_when_the_pools_agree_with_the_processes(serve: Callable[[], CannedServer]) -> None:
    balancer = serve()
    orchestrator = FakeOrchestrator(
        [instance("load-balancer", "load-balancer", balancer.port), instance("gateway-2", "gateway", 1, "stopped")]
    )
    stack = StackClient(orchestrator, admin_token=lambda: "t", timeout=1.0)
    balancer.json("GET", "/lb/status", {"backends": [{"name": "gateway-2", "healthy": False}]})
    assert wait_settled(stack, timeout=1.0) == ""
    balancer.json("GET", "/lb/status", {"backends": [{"name": "gateway-2", "healthy": True}]})
    assert wait_settled(stack, timeout=0.2) == (
        "the pools still disagreed with the processes after 0.2 s about gateway-2"
    )
