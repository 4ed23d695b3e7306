"""The log of control actions and the metrics Grafana draws its annotations from."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from dashboard.actionlog import KEEP_ACTIONS, Action, ActionLog

from ..support import FakeClock


def count(registry: CollectorRegistry, action: str, target: str, outcome: str) -> float | None:
    """Return scalelab_control_actions_total for one action, target and outcome."""
    labels = {"action": action, "target": target, "outcome": outcome}
    return registry.get_sample_value("scalelab_control_actions_total", labels)


def last(registry: CollectorRegistry, action: str, target: str) -> float | None:
    """Return when the latest ``action`` on ``target`` started, as exported."""
    labels = {"action": action, "target": target}
    return registry.get_sample_value("scalelab_control_action_last_timestamp_seconds", labels)


def test_begin_records_a_pending_action_at_the_clocks_time(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    action = log.begin("kill", "gateway-2")
    assert (action.kind, action.target, action.time) == ("kill", "gateway-2", 1_000.0)
    assert action.outcome == "pending"
    assert action.finished is None
    assert log.recent() == [action]
    assert log.latest() == action


def test_finish_records_the_outcome_message_and_time(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    action = log.begin("kill", "gateway-2")
    clock.advance(0.25)
    done = log.finish(action, True, "gateway-2 is stopped")
    assert (done.outcome, done.message, done.time, done.finished) == ("ok", "gateway-2 is stopped", 1_000.0, 1_000.25)
    assert log.recent() == [done]
    failed = log.finish(log.begin("start", "gateway-2"), False, "port in use")
    assert failed.outcome == "failed"
    assert log.latest() == failed


def test_finishing_one_action_leaves_the_others_alone(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    first = log.begin("pause", "gateway-1")
    second = log.begin("knob", "gateway", "cache_enabled=False")
    log.finish(second, True)
    assert [a.outcome for a in log.recent()] == ["pending", "ok"]
    assert log.recent()[0] == first


def test_actions_get_increasing_ids(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    ids = [log.begin("add", "microservice").id for _ in range(3)]
    assert ids == sorted(set(ids))


def test_recent_returns_actions_started_at_or_after_since(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    for target in ("gateway-1", "gateway-2", "gateway-3"):
        log.begin("kill", target)
        clock.advance(10)
    assert [a.target for a in log.recent(1_010.0)] == ["gateway-2", "gateway-3"]
    assert [a.target for a in log.recent(1_010.1)] == ["gateway-3"]
    assert log.recent(2_000.0) == []
    assert len(log.recent()) == 3


def test_an_empty_log_has_no_latest_action(registry: CollectorRegistry):
    log = ActionLog(registry)
    assert log.latest() is None
    assert log.recent() == []


def test_the_log_keeps_only_the_newest_actions(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    for _ in range(KEEP_ACTIONS + 5):
        log.begin("kill", "cache")
        clock.advance(1)
    kept = log.recent()
    assert len(kept) == KEEP_ACTIONS
    assert kept[-1] == log.latest()
    assert kept[0].time == 1_005.0


def test_the_label_is_what_the_chart_marker_says():
    assert Action(1, 0.0, "kill", "gateway-2").label == "kill gateway-2"
    assert Action(2, 0.0, "knob", "gateway", "cache_enabled=False").label == "knob gateway cache_enabled=False"
    assert Action(3, 0.0, "load-stop", "").label == "load-stop"


def test_finished_actions_are_counted_by_kind_target_and_outcome(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    log.finish(log.begin("kill", "gateway-2"), True)
    log.finish(log.begin("kill", "gateway-2"), True)
    log.finish(log.begin("kill", "gateway-2"), False, "already stopped")
    log.begin("kill", "gateway-1")  # still running: not counted yet
    assert count(registry, "kill", "gateway-2", "ok") == 2.0
    assert count(registry, "kill", "gateway-2", "failed") == 1.0
    assert count(registry, "kill", "gateway-1", "ok") is None


def test_the_last_timestamp_is_when_the_latest_action_started(registry: CollectorRegistry, clock: FakeClock):
    log = ActionLog(registry, clock=clock)
    first = log.begin("pause", "gateway-1")
    assert last(registry, "pause", "gateway-1") == 1_000.0
    clock.advance(30)
    log.finish(first, True)  # finishing does not move it
    assert last(registry, "pause", "gateway-1") == 1_000.0
    log.begin("pause", "gateway-1")
    assert last(registry, "pause", "gateway-1") == 1_030.0
    assert last(registry, "resume", "gateway-1") is None
