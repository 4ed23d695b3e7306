"""The autoscaler: its decisions, its policy's checks, the control loop, and the signal it reads from Prometheus."""

from __future__ import annotations

import pytest

from scalelab.autoscaler import (
    Autoscaler,
    AutoscalerError,
    PrometheusSignal,
    ScalingPolicy,
    decide,
    newest_first,
    signal_query,
)
from tests.unit.standins import CannedServer, closed_port
from tests.unit.support import wait_for

POLICY = ScalingPolicy(target=1.0, min_instances=3, max_instances=8, cooldown_seconds=5, hysteresis=0.2).resolved()


@pytest.mark.parametrize(
    ("instances", "value", "wanted"),
    [
        (3, 1.0, 3),  # at the target: keep
        (3, 1.5, 5),  # ceil(3 x 1.5 / 1)
        (3, 1.01, 4),  # just above: at least one more
        (3, 40.0, 8),  # never past the maximum
        (6, 0.5, 5),  # calm, and 0.5 x 6 / 5 = 0.6 stays under the target: one fewer
        (6, 0.0, 5),  # idle: one at a time
        (4, 0.79, 4),  # calm, but with one fewer 0.79 x 4 / 3 = 1.05 would pass the target
        (5, 0.85, 5),  # inside the hysteresis band: keep
        (3, 0.0, 3),  # never below the minimum
        (2, 0.0, 3),  # below the minimum (an instance was removed by hand): back to it
        (9, 1.0, 8),  # above the maximum: back to it
    ],
)
def test_decide_scales_like_the_hpa_and_in_calmly(instances: int, value: float, wanted: int):
    assert decide(POLICY, instances, value) == wanted


def test_the_bounds_default_to_the_catalogs():
    policy = ScalingPolicy().resolved()
    assert (policy.min_instances, policy.max_instances) == (3, 16)  # microservice-1..3; its catalog maximum


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"service": "cache"}, "scales a service that scales"),
        ({"signal": "cpu"}, "signal is one of in_flight, p95_ms"),
        ({"min_instances": 5, "max_instances": 4}, "min_instances <= max_instances"),
        ({"max_instances": 99}, "<= 16"),
        ({"target": 0}, "target must be a number above 0"),
        ({"target": "1"}, "target is a number"),
        ({"target": True}, "target is a number"),
        ({"min_instances": 2.5}, "whole number"),
        ({"hysteresis": 1}, "hysteresis"),
        ({"nonsense": 1}, "unknown autoscaler setting"),
        ({"service": 3}, "service is a name"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_naming_the_field(fields, message):
    with pytest.raises(AutoscalerError, match=message):
        ScalingPolicy.from_fields(fields)


def test_fields_go_on_top_of_the_policy_there_was():
    before = ScalingPolicy.from_fields({"target": 0.7, "max_instances": 6})
    after = ScalingPolicy.from_fields({"cooldown_seconds": 1}, before)
    assert (after.target, after.max_instances, after.cooldown_seconds) == (0.7, 6, 1.0)


def test_scaling_in_removes_the_newest_instance_first():
    assert newest_first(["microservice-2", "microservice-10", "microservice-4"]) == [
        "microservice-10",
        "microservice-4",
        "microservice-2",
    ]


class Fake:
    """A service of ``count`` instances, a signal that says ``value``, and a clock."""

    def __init__(self, count: int, value: float) -> None:
        self.names = [f"microservice-{n}" for n in range(1, count + 1)]
        self.value = value
        self.now = 1000.0
        self.fail = ""

    def signal(self, service: str, signal: str) -> float:
        if self.fail:
            raise AutoscalerError(self.fail)
        return self.value

    def running(self, service: str) -> list[str]:
        return list(self.names)

    def scale(self, service: str, change: int) -> tuple[str, ...]:
        if change > 0:
            added = [f"microservice-{len(self.names) + n}" for n in range(1, change + 1)]
            self.names += added
            return tuple(added)
        removed = newest_first(self.names)[:-change]
        self.names = [name for name in self.names if name not in removed]
        return tuple(removed)


def scaler(fake: Fake, seen: list | None = None) -> Autoscaler:
    record = seen.append if seen is not None else None
    return Autoscaler(POLICY, fake.signal, fake.running, fake.scale, record, clock=lambda: fake.now)


def test_a_step_scales_out_records_the_decision_and_then_cools_down():
    fake = Fake(3, 2.0)
    seen: list = []
    loop = scaler(fake, seen)
    decision = loop.step()
    assert decision is not None and (decision.before, decision.after) == (3, 6)
    assert decision.instances == ("microservice-4", "microservice-5", "microservice-6")
    assert decision.label == "scale-out microservice 3→6" and decision.reason == "in_flight 2 > target 1"
    assert seen == [decision]
    fake.value = 0.0
    fake.now += 4  # inside the cool-down: nothing, however idle
    assert loop.step() is None
    fake.now += 2
    step = loop.step()
    assert step is not None and (step.before, step.after, step.instances) == (6, 5, ("microservice-6",))
    assert [d.verb for d in loop.decisions] == ["scale-out", "scale-in"]


def test_an_unreadable_signal_changes_nothing_and_says_why():
    fake = Fake(3, 5.0)
    fake.fail = "Prometheus at http://127.0.0.1:9 did not answer"
    loop = scaler(fake)
    assert loop.step() is None and fake.names == ["microservice-1", "microservice-2", "microservice-3"]
    assert loop.status()["error"] == fake.fail


def test_a_failed_change_is_recorded_with_its_error_and_the_loop_goes_on():
    fake = Fake(3, 2.0)

    def refuse(service: str, change: int) -> tuple[str, ...]:
        raise RuntimeError("no free port for microservice-4")

    loop = Autoscaler(POLICY, fake.signal, fake.running, refuse, clock=lambda: fake.now)
    decision = loop.step()
    assert decision is not None and decision.error == "no free port for microservice-4"
    assert decision.after == 6 and decision.instances == ()


def test_the_loop_runs_in_a_thread_until_stopped():
    fake = Fake(3, 2.0)
    loop = Autoscaler(
        ScalingPolicy(target=1, max_instances=4, interval_seconds=0.1), fake.signal, fake.running, fake.scale
    )
    loop.start()
    try:
        wait_for(lambda: len(fake.names) == 4, timeout=5, what="the loop's first scale-out")
        assert loop.enabled
    finally:
        loop.stop()
    assert not loop.enabled


def test_the_queries_read_the_pools_in_flight_and_the_services_own_latency():
    assert signal_query("microservice", "in_flight") == (
        'avg(sum by (backend) (avg_over_time(scalelab_backend_in_flight{pool="microservices"}[3s])))'
    )
    p95 = signal_query("gateway", "p95_ms")
    assert p95.startswith("1000 * histogram_quantile(0.95,") and 'service="gateway"' in p95 and "/health" in p95


def prometheus_answer(result: list) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.mark.parametrize(
    ("result", "value"),
    [
        ([{"metric": {}, "value": [1, "2.5"]}], 2.5),
        ([], 0.0),  # no series: nothing in flight
        ([{"metric": {}, "value": [1, "NaN"]}], 0.0),  # no requests in the window: nothing was slow
    ],
)
def test_the_signal_reads_one_number_from_prometheus(result, value):
    server = CannedServer()
    try:
        server.json("GET", "/api/v1/query", prometheus_answer(result))
        assert PrometheusSignal(server.url).read("microservice", "in_flight") == value
        assert server.seen[0].query["query"] == [signal_query("microservice", "in_flight")]
    finally:
        server.stop()


def test_prometheus_not_answering_is_an_error_naming_its_address():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(AutoscalerError, match=f"Prometheus at {url} did not answer"):
        PrometheusSignal(url, timeout=0.5).read("microservice", "p95_ms")
