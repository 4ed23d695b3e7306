"""The autoscaler panel: its form, the switch, and the status line."""

from __future__ import annotations

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab
from dashboard.panels import autoscaler
from tests.unit.standins import closed_port

from .support import Callbacks, ids, text

FORM = {
    "autoscaler-service": "microservice",
    "autoscaler-signal": "in_flight",
    "autoscaler-target": 0.7,
    "autoscaler-min": 0,
    "autoscaler-max": 6,
    "autoscaler-cooldown": 2,
}


def test_the_card_has_the_switch_the_policy_and_a_status_line(lab: Lab):
    card = autoscaler.card(lab)
    assert ids(card) == [
        "autoscaler-on",
        "autoscaler-service",
        "autoscaler-signal",
        "autoscaler-target",
        "autoscaler-min",
        "autoscaler-max",
        "autoscaler-cooldown",
        "autoscaler-status",
    ]
    assert "requests in flight per instance" in text(card)


def test_an_empty_field_keeps_the_default():
    fields = autoscaler.policy_from_form("microservice", "p95_ms", None, "", 4, 1.5)
    assert fields == {"service": "microservice", "signal": "p95_ms", "max_instances": 4, "cooldown_seconds": 1.5}


def test_the_status_line_says_what_it_watches_and_its_latest_decision():
    status = {
        "enabled": True,
        "describe": "microservice on in_flight, target 0.7 per instance, 3 to 6 instances, cool-down 2 s",
        "instances": 5,
        "signal": 0.61234,
        "error": "",
        "decisions": [{"label": "scale-out microservice 3→5", "reason": "in_flight 1.1 > target 0.7"}],
    }
    shown = text(autoscaler.autoscaler_status(status))
    assert "5 running" in shown and "signal 0.612" in shown
    assert "last: scale-out microservice 3\\u21925 (in_flight 1.1 > target 0.7)" in shown
    assert "Off:" in text(autoscaler.autoscaler_status({"enabled": False}))


def test_the_switch_turns_the_loop_on_with_the_forms_policy_and_off(app: Dash, lab: Lab):
    lab.config.prometheus_url = f"http://127.0.0.1:{closed_port()}"
    register_panels(app, lab, [autoscaler])
    callbacks = Callbacks(app)
    try:
        pressed = callbacks.fire("autoscaler-on", "value", True, state=FORM)
        assert pressed["action-sink.children"] == "autoscaler microservice on"
        shown = callbacks.fire("tick", "n_intervals", 1, output="autoscaler-status")
        assert "On: microservice on in_flight, target 0.7 per instance, 3 to 6 instances" in text(
            shown["autoscaler-status.children"]
        )
        assert lab.autoscaler_status()["enabled"] is True
        assert autoscaler.card(lab).children[1].children[1].value is True  # a page opened now shows it on
        callbacks.fire("autoscaler-on", "value", False, state=FORM)
        shown = callbacks.fire("tick", "n_intervals", 2, output="autoscaler-status")
        assert "Off:" in text(shown["autoscaler-status.children"]) and lab.autoscaler_status()["enabled"] is False
    finally:
        lab.set_autoscaler(False)


def test_a_policy_that_cannot_work_leaves_it_off_and_says_why(app: Dash, lab: Lab):
    register_panels(app, lab, [autoscaler])
    callbacks = Callbacks(app)
    callbacks.fire("autoscaler-on", "value", True, state={**FORM, "autoscaler-max": 99})
    shown = callbacks.fire("tick", "n_intervals", 1, output="autoscaler-status")
    assert "max_instances <= 16" in text(shown["autoscaler-status.children"])
    assert lab.autoscaler_status()["enabled"] is False
    assert lab.actions.latest().outcome == "failed" and lab.actions.latest().target == "refused"
