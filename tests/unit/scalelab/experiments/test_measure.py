"""Detection and recovery from the pools' own timestamps, and the requests caught in between."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from scalelab.experiments.measure import (
    counter_deltas,
    counters,
    cpu_per_request,
    cpu_seconds,
    failover_events,
    failover_metrics,
)
from scalelab.experiments.records import Record
from scalelab.experiments.timeline import Executed
from scalelab.failover import PoolWatcher, Transition
from scalelab.stack import StackClient
from tests.unit.standins import CannedServer, closed_port, instance

from .support import FakeOrchestrator

T0 = 1_800_000_000.0
HEALTH_CHECK = {"interval_seconds": 0.25, "timeout_seconds": 0.3, "fall": 2, "rise": 2}


def status(healthy: bool, changed: float) -> dict:
    return {
        "health_check": HEALTH_CHECK,
        "backends": [
            {"name": "gateway-1", "healthy": True, "last_change": T0 - 100, "requests_served": 5},
            {"name": "gateway-2", "healthy": healthy, "last_change": changed, "requests_served": 5},
        ],
    }


def test_the_watcher_keeps_each_state_change_with_the_pool_s_timestamp(serve: Callable[[], CannedServer]) -> None:
    balancer = serve()
    balancer.json("GET", "/lb/status", status(True, T0 - 100))
    balancer.text("GET", "/metrics", 'scalelab_backend_retries_total{pool="gateways",backend="gateway-1"} 7.0\n')
    orchestrator = FakeOrchestrator([instance("load-balancer", "load-balancer", balancer.port)])
    watcher = PoolWatcher(StackClient(orchestrator, admin_token=lambda: "t", timeout=1.0))
    watcher.start()
    try:
        time.sleep(0.2)
        balancer.json("GET", "/lb/status", status(False, T0 + 2.3))
        time.sleep(0.2)
    finally:
        watcher.stop()
    assert watcher.transitions == [Transition("load-balancer", "gateway-2", False, T0 + 2.3)]
    assert watcher.holders("gateway-2") == ["load-balancer"]
    assert watcher.predicted(["load-balancer"]) == 1.1
    assert watcher.retry_samples and watcher.retry_samples[-1][1] == {"load-balancer": 7.0}


def watched(transitions: list[Transition]) -> PoolWatcher:
    watcher = PoolWatcher(StackClient(FakeOrchestrator([]), admin_token=lambda: "t", timeout=1.0))
    watcher.transitions = transitions
    watcher.members = {"gateway-1": {"microservice-2"}, "gateway-2": {"microservice-2"}}
    watcher.policies = {"gateway-1": HEALTH_CHECK, "gateway-2": HEALTH_CHECK}
    watcher.retry_samples = [(T0 + 4.9, {"gateway-1": 10.0, "gateway-2": 4.0}), (T0 + 5.8, {"gateway-1": 13.0})]
    return watcher


def request(seq: int, sent: float, status: int = 200, latency: float | None = 10.0, instance: str = "") -> Record:
    return Record("default", seq, T0 + sent, latency, status, "process", instance=instance)


def test_detection_is_the_last_pool_s_change_after_the_kill_and_recovery_after_the_start() -> None:
    watcher = watched(
        [
            Transition("gateway-1", "microservice-2", False, T0 + 5.2),
            Transition("gateway-2", "microservice-2", False, T0 + 5.4),
            Transition("gateway-1", "microservice-2", True, T0 + 9.0),
            Transition("gateway-2", "microservice-2", True, T0 + 9.1),
        ]
    )
    executed = [
        Executed("kill microservice-2", "kill", "microservice-2", T0 + 5.0, T0 + 5.01, ("microservice-2",), 5.0),
        Executed("start microservice-2", "start", "microservice-2", T0 + 7.0, T0 + 8.5, ("microservice-2",), 7.0),
    ]
    records = [
        request(0, 4.0),  # answered before the kill: not in the window
        request(1, 4.99, 502, 50.0),  # out at the kill, failed: counted
        request(2, 5.5, 503),  # failed during detection: counted
        request(3, 6.5, 503),  # after detection + settle: not counted
        request(4, 9.2, instance="microservice-2"),  # the first answer it gives again
    ]
    [event] = failover_events(executed, watcher, records)
    assert event.detected_after == pytest.approx(0.4)
    assert event.predicted == 1.1
    assert event.failed == 2
    assert event.retried == 3  # gateway-1: 10 -> 13; gateway-2 was not read afterwards
    assert (event.restored_by, event.process_up_after) == ("start", 1.5)
    assert event.marked_up_after == pytest.approx(2.1)
    assert event.serving_after == pytest.approx(2.21)
    assert event.note == ""
    metrics = failover_metrics([event])
    assert metrics["detection_seconds"] == pytest.approx(0.4)
    assert metrics["recovery_seconds"] == pytest.approx(2.1)
    assert metrics["failover_failed"] == 2


def test_an_instance_one_pool_never_marked_down_is_not_detected() -> None:
    watcher = watched([Transition("gateway-1", "microservice-2", False, T0 + 5.2)])
    kill = Executed("kill microservice-2", "kill", "microservice-2", T0 + 5.0, T0 + 5.0, ("microservice-2",), 5.0)
    [event] = failover_events([kill], watcher, [])
    assert event.detected_after is None
    assert event.note == "not marked down by every pool (gateway-1, gateway-2)"
    assert failover_metrics([event])["detection_seconds"] is None  # so a check on it fails


def test_changes_before_the_action_do_not_count() -> None:
    watcher = watched(
        [
            Transition("gateway-1", "microservice-2", False, T0 + 1.0),
            Transition("gateway-2", "microservice-2", False, T0 + 1.0),
        ]
    )
    kill = Executed("kill microservice-2", "kill", "microservice-2", T0 + 5.0, T0 + 5.0, ("microservice-2",), 5.0)
    assert failover_events([kill], watcher, [])[0].detected_after is None


def test_actions_on_unbalanced_instances_make_no_event() -> None:
    kill = Executed("kill cache", "kill", "cache", T0, T0, ("cache",), 1.0)
    assert failover_events([kill], watched([]), []) == []
    assert failover_metrics([]) == {}


def test_counters_are_read_per_instance_and_their_growth_summed(serve: Callable[[], CannedServer]) -> None:
    gateway, balancer = serve(), serve()
    gateway.text("GET", "/metrics", "scalelab_gateway_database_reads_total 10.0\n")
    balancer.text("GET", "/metrics", 'scalelab_backend_retries_total{pool="gateways",backend="gateway-1"} 2.0\n')
    orchestrator = FakeOrchestrator(
        [instance("gateway-1", "gateway", gateway.port), instance("load-balancer", "load-balancer", balancer.port)]
    )
    stack = StackClient(orchestrator, admin_token=lambda: "t", timeout=1.0)
    before = counters(stack)
    assert before == {
        "database_reads": {"gateway-1": 10.0, "load-balancer": 0.0},
        "retries": {"gateway-1": 0.0, "load-balancer": 2.0},
    }
    gateway.text("GET", "/metrics", "scalelab_gateway_database_reads_total 4.0\n")  # restarted: from zero
    balancer.text("GET", "/metrics", 'scalelab_backend_retries_total{pool="gateways",backend="gateway-1"} 5.0\n')
    assert counter_deltas(before, counters(stack)) == {"database_reads": 0.0, "retries": 3.0}


def test_counters_that_cannot_all_be_read_are_not_measured(serve: Callable[[], CannedServer]) -> None:
    orchestrator = FakeOrchestrator([instance("gateway-1", "gateway", closed_port())])
    assert counters(StackClient(orchestrator, admin_token=lambda: "t", timeout=0.5)) is None
    assert counter_deltas(None, {}) == {"database_reads": None, "retries": None}


def test_cpu_per_request_is_each_tiers_cpu_time_over_the_answered_requests(serve: Callable[[], CannedServer]) -> None:
    g1, g2, micro = serve(), serve(), serve()
    for server, seconds in ((g1, 1.0), (g2, 2.0), (micro, 5.0)):
        server.text("GET", "/metrics", f"process_cpu_seconds_total {seconds}\n")
    orchestrator = FakeOrchestrator(
        [
            instance("gateway-1", "gateway", g1.port),
            instance("gateway-2", "gateway", g2.port),
            instance("microservice-1", "microservice", micro.port),
        ]
    )
    stack = StackClient(orchestrator, admin_token=lambda: "t", timeout=1.0)
    before = cpu_seconds(stack)
    assert before == {"gateway-1": 1.0, "gateway-2": 2.0, "microservice-1": 5.0}
    g1.text("GET", "/metrics", "process_cpu_seconds_total 1.5\n")
    g2.text("GET", "/metrics", "process_cpu_seconds_total 2.5\n")
    micro.text("GET", "/metrics", "process_cpu_seconds_total 0.2\n")  # restarted: from zero, counts as none
    assert cpu_per_request(before, cpu_seconds(stack), 500) == pytest.approx(
        {"cpu_ms_per_request.gateway": 2.0, "cpu_ms_per_request.microservice": 0.0}  # 1 s over 500 requests
    )
    assert cpu_per_request(None, {}, 500) == {} and cpu_per_request(before, before, 0) == {}
