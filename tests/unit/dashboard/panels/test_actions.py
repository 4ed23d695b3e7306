"""The banners (the figures' source, the latest press) and the action log."""

from __future__ import annotations

import time

from dash import Dash
from prometheus_client import CollectorRegistry

from dashboard.actionlog import ActionLog
from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab, LabStatus
from dashboard.panels import actions

from .support import Callbacks, ids, text


def test_the_banners_come_first_and_the_log_has_its_card():
    assert [ids(banner) for banner in actions.banners()] == [["source-banner"], ["action-banner"]]
    assert ids(actions.card()) == ["action-log"]


def test_the_source_banner_shows_only_when_prometheus_does_not_answer():
    assert actions.source_banner(LabStatus()) == []  # before the first sample
    assert actions.source_banner(LabStatus(time=1.0, source="prometheus")) == []
    banner = actions.source_banner(LabStatus(time=1.0, source="services", source_problem="it is down."))
    assert banner.id == "prometheus-down" and "Prometheus is not reachable. " in text(banner)


def test_the_action_banner_follows_the_latest_action():
    log = ActionLog(CollectorRegistry(), clock=lambda: 100.0)
    assert actions.action_banner(None) == []
    pending = log.begin("kill", "gateway-2")
    assert actions.action_banner(pending, now=101.0).color == "info"
    done = log.finish(pending, True, "killed")
    assert "kill gateway-2: killed" in text(actions.action_banner(done, now=101.0))
    assert actions.action_banner(done, now=100.0 + actions.ACTION_BANNER_SECONDS + 1) == []
    failed = log.finish(log.begin("start", "gateway-2"), False, "no such instance")
    late = 100.0 + actions.ACTION_BANNER_SECONDS + 1
    assert actions.action_banner(failed, now=late).color == "danger"  # a failure stays up longer
    assert actions.action_banner(failed, now=100.0 + actions.FAILED_BANNER_SECONDS + 1) == []


def test_the_log_lists_the_newest_first():
    log = ActionLog(CollectorRegistry())
    assert "Nothing pressed yet." in text(actions.action_log([]))
    first = log.finish(log.begin("kill", "gateway-2"), True)
    second = log.begin("start", "gateway-2")
    shown = text(actions.action_log([first, second]))
    assert shown.index("start gateway-2") < shown.index("kill gateway-2")


def test_each_interval_the_banners_and_the_log_are_refreshed(app: Dash, lab: Lab):
    lab.status = LabStatus(time=time.time(), source="services", source_problem="no answer.")
    lab.actions.begin("pause", "microservice-1")
    register_panels(app, lab, [actions])
    shown = Callbacks(app).fire("tick", "n_intervals", 1)
    assert set(shown) == {"source-banner.children", "action-banner.children", "action-log.children"}
    assert shown["source-banner.children"]["props"]["id"] == "prometheus-down"
    assert "pause microservice-1" in text(shown["action-banner.children"])
    assert "pause microservice-1" in text(shown["action-log.children"])
