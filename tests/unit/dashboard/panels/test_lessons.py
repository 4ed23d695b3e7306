"""The lessons panel: the picker, a lesson's form and steps, the comparison, and the export."""

from __future__ import annotations

import json
from pathlib import Path

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import Lab
from dashboard.panels import lessons
from scalelab.lessons import StepResult, builtin_lessons

from .support import Callbacks, ids, text


def test_the_card_lists_every_lesson(lab: Lab):
    shown = text(lessons.card(lab))
    for name in builtin_lessons():
        assert f'"value": "{name}"' in shown
    assert {"lesson-name", "lesson-student", "lesson-view", "lesson-download"} <= set(ids(lessons.card(lab)))


def test_picking_a_lesson_shows_its_questions_steps_and_export(app: Dash, lab: Lab):
    register_panels(app, lab, [lessons])
    shown = Callbacks(app).fire("lesson-name", "value", "failover")
    view = text(shown["lesson-view.children"])
    assert "Failover, kill versus pause" in view and "How many seconds after a kill" in view
    assert '"step": "kill"' in view and '"step": "pause"' in view and "lesson-export" in view


def test_a_step_from_the_browser_runs_only_a_listed_lesson(lab: Lab):
    action = lab.run_lesson_step("../../etc/passwd", "kill")
    assert action.outcome == "failed" and action.target == "refused"
    assert "built-in lessons" in action.message
    action = lab.run_lesson_step("failover", "nosuch")
    assert action.outcome == "failed" and "no such step" in action.message


def test_measured_values_and_the_why_show_once_the_steps_ran(app: Dash, lab: Lab, tmp_path: Path):
    register_panels(app, lab, [lessons])
    summary = {
        "variants": [{"name": "default", "metrics": {"miss_mean_ms": 61.0, "hit_mean_ms": 4.0, "cache_speedup": 15.25}}]
    }
    lab.lesson_steps["cache-aside"] = {"read": StepResult("read", tmp_path, True, summary)}
    ident = [
        {"type": "lesson-prediction", "lesson": "cache-aside", "id": pid} for pid in ("miss_ms", "hit_ms", "speedup")
    ]
    callbacks = Callbacks(app)
    shown = callbacks.fire("tick", "n_intervals", 1, state={"lesson-name": "cache-aside"}, output="lesson-results")
    table = text(shown["lesson-results.children"])
    assert "61 ms" in table and "4 ms" in table and "15.2" in table
    assert "Because" not in table and "4. Why" in text(shown["lesson-why.children"])
    # The next interval sends nothing the page already shows.
    page_now = {"lesson-name": "cache-aside", **{key.split(".")[0]: value for key, value in shown.items()}}
    held = json.loads(json.dumps(page_now, default=lambda component: component.to_plotly_json()))
    assert callbacks.fire("tick", "n_intervals", 2, state=held) is None
    answers = lessons.predictions_of(lab.lesson("cache-aside"), [60, "x", None], ident)
    assert answers == {"miss_ms": 60.0}


def test_export_sends_the_worksheet_with_the_students_name(app: Dash, lab: Lab):
    register_panels(app, lab, [lessons])
    shown = Callbacks(app).fire(
        "lesson-export", "n_clicks", 1, state={"lesson-name": "failover", "lesson-student": "Ada <b>L</b>"}
    )
    download = shown["lesson-download.data"]
    assert download["filename"] == "worksheet-failover-AdabLb.html"  # letters and digits of the name only
    assert "Ada &lt;b&gt;L&lt;/b&gt;" in download["content"] and "Worksheet: Failover" in download["content"]
