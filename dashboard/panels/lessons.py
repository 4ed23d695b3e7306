"""The lessons panel: a predict-then-measure worksheet beside the live charts, and its export.

Pick a lesson; read its goal and background; write a prediction for each question; run each
step (an experiment against this stack, marked on the charts like any press); read what was
measured beside each prediction, then why; export the worksheet as one HTML file to hand in.
The answers and the name are kept in the browser (they survive a reload); the measurements are
kept by the page for as long as it runs.
"""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import ALL, Dash, Input, Output, State, ctx, dcc, html, no_update

from dashboard.changes import TICK, refreshing
from dashboard.lab import Lab
from scalelab.lessons import Lesson, LessonError, measured_value, render_worksheet
from scalelab.lessons.worksheet import compare

__all__ = ["card", "lesson_view", "measurements", "predictions_of", "register"]

VERDICT_COLOURS = {"right": "success", "off": "warning", "missing": "secondary"}


def card(lab: Lab) -> dbc.Card:
    """Return the lessons card: the lesson picker, the student's name, and the lesson's view."""
    try:
        lessons = lab.lessons()
    except LessonError as exc:  # a broken lesson file must not take the page down
        return dbc.Card([dbc.CardHeader("Lessons"), dbc.CardBody(dbc.Alert(str(exc), color="danger"))])
    options = [{"label": "pick a lesson", "value": ""}] + [
        {"label": f"{name}: {title}", "value": name} for name, title in lessons
    ]
    controls = dbc.Row(
        [
            dbc.Col(dbc.Select(id="lesson-name", options=options, value="", size="sm"), md=7),
            dbc.Col(
                dbc.Input(
                    id="lesson-student",
                    placeholder="your name (on the worksheet)",
                    size="sm",
                    persistence=True,
                    persistence_type="local",
                ),
                md=5,
            ),
        ],
        className="g-2 mb-2",
    )
    return dbc.Card(
        [
            dbc.CardHeader("Lessons"),
            dbc.CardBody(
                [
                    html.P(
                        "Predict, then measure: each step runs on this stack (like `scalelab lesson NAME`) and "
                        "puts it back afterwards. Answers stay in this browser; export the worksheet at the end.",
                        className="small text-muted",
                    ),
                    controls,
                    html.Div(id="lesson-view"),
                    dcc.Download(id="lesson-download"),
                ]
            ),
        ],
        className="mb-3",
    )


def _prediction_input(lesson: Lesson, prediction: Any) -> Any:
    ident = {"type": "lesson-prediction", "lesson": lesson.name, "id": prediction.id}
    keep = {"persistence": True, "persistence_type": "local"}
    if prediction.choices:
        options = [{"label": "choose", "value": ""}] + [
            {"label": c.label, "value": c.label} for c in prediction.choices
        ]
        return dbc.Select(id=ident, options=options, value="", size="sm", **keep)
    return dbc.Input(id=ident, type="number", size="sm", placeholder=prediction.unit or "a number", **keep)


def lesson_view(lesson: Lesson) -> Any:
    """Return a lesson's view: goal, background, the prediction form, its steps and the export button."""
    questions = [
        dbc.Row(
            [
                dbc.Col(dbc.Label(prediction.question, size="sm"), md=8),
                dbc.Col(_prediction_input(lesson, prediction), md=4),
            ],
            className="g-2 mb-1",
        )
        for prediction in lesson.predictions
    ]
    steps = [
        html.Li(
            [
                html.Strong(step.title),
                html.Div(step.do, className="small"),
                dbc.Button(
                    "Run step",
                    id={"type": "lesson-step", "lesson": lesson.name, "step": step.id},
                    color="primary",
                    size="sm",
                    className="mt-1",
                ),
            ],
            className="mb-2",
        )
        for step in lesson.steps
    ]
    return html.Div(
        [
            html.H5(lesson.title),
            html.P([html.Strong("Goal. "), lesson.goal]),
            dcc.Markdown(lesson.background, className="small"),
            html.H6("1. Predict"),
            *questions,
            html.H6("2. Run the steps", className="mt-3"),
            html.Ol(steps),
            html.Div(id="lesson-progress", className="small mb-2"),
            html.H6("3. Compare"),
            html.Div(id="lesson-results"),
            html.Div(id="lesson-why"),
            dbc.Button("Export worksheet", id="lesson-export", color="success", size="sm", className="mt-2"),
        ]
    )


def predictions_of(lesson: Lesson, values: list[Any], ids: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the student's answers by prediction id (the ones that fit the question; others are left out)."""
    answers = {}
    for ident, value in zip(ids, values, strict=False):
        if ident.get("lesson") != lesson.name or value in (None, ""):
            continue
        try:
            answers[ident["id"]] = lesson.prediction(ident["id"]).coerce(value)
        except (LessonError, ValueError):
            continue
    return answers


def measurements(lesson: Lesson, steps: dict[str, Any], answers: dict[str, Any]) -> Any:
    """Return the table of each question, the student's answer and the measured value."""
    rows = []
    for prediction in lesson.predictions:
        value = measured_value(prediction, steps)
        measured = "—" if value is None else f"{prediction.answer_of(value)} {prediction.unit}".rstrip()
        verdict, style = compare(prediction, answers.get(prediction.id), value)
        answer = answers.get(prediction.id)
        rows.append(
            html.Tr(
                [
                    html.Td(prediction.question),
                    html.Td("—" if answer is None else f"{answer} {'' if prediction.choices else prediction.unit}"),
                    html.Td(measured, id={"type": "lesson-measured", "id": prediction.id}),
                    html.Td(dbc.Badge(verdict, color=VERDICT_COLOURS[style])),
                ],
                **{"data-prediction": prediction.id},
            )
        )
    header = html.Thead(html.Tr([html.Th("question"), html.Th("your prediction"), html.Th("measured"), html.Th("")]))
    return dbc.Table([header, html.Tbody(rows)], size="sm", bordered=True, className="small")


def register(app: Dash, lab: Lab) -> None:
    """Draw the picked lesson, run its steps as presses, show the measurements, and export the worksheet."""

    @app.callback(Output("lesson-view", "children"), Input("lesson-name", "value"))
    def pick(name: Any) -> Any:
        if not name:
            return html.P("Pick a lesson to begin.", className="small text-muted mb-0")
        lesson = lab.lesson(name)
        return lesson_view(lesson) if lesson is not None else html.P("No such lesson.", className="small")

    @app.callback(
        Output("action-sink", "children", allow_duplicate=True),
        Input({"type": "lesson-step", "lesson": ALL, "step": ALL}, "n_clicks"),
        prevent_initial_call=True,
    )
    def run_step(clicks: list[Any]) -> Any:
        trigger = ctx.triggered_id
        if not isinstance(trigger, dict) or not any(clicks or []):
            return no_update
        return lab.run_lesson_step(trigger.get("lesson"), trigger.get("step")).label

    # Its own callback, as its view is drawn only once a lesson is picked (dashboard/changes.py, ticked);
    # what the page already shows is not sent again.
    @refreshing(
        app,
        [Output("lesson-progress", "children"), Output("lesson-results", "children"), Output("lesson-why", "children")],
        TICK,
        Input({"type": "lesson-prediction", "lesson": ALL, "id": ALL}, "value"),
        State("lesson-name", "value"),
        State({"type": "lesson-prediction", "lesson": ALL, "id": ALL}, "id"),
    )
    def compare_now(_n: Any, values: list[Any], name: Any, ids: list[dict[str, Any]]) -> Any:
        lesson = lab.lesson(name)
        if lesson is None:
            return no_update, no_update, no_update
        steps = lab.lesson_steps.get(name, {})
        running = lab.lesson_running
        if running is not None and running[0] == name:
            progress = dbc.Progress(value=round(running[2] * 100), label=running[3][:80], striped=True, animated=True)
        else:
            done = [step.title for step in lesson.steps if step.id in steps]
            progress = f"Done: {', '.join(done)}." if done else "No step run yet."
        answers = predictions_of(lesson, values or [], ids or [])
        why: Any = ""
        if all(step.id in steps for step in lesson.steps):
            why = html.Div(
                [
                    html.H6("4. Why"),
                    dcc.Markdown(lesson.why, className="small"),
                    *[
                        dcc.Markdown(f"**{heading}**\n\n{text}", className="small")
                        for heading, text in lesson.more.items()
                    ],
                    html.Ul([html.Li(item) for item in lesson.try_next], className="small") if lesson.try_next else "",
                ],
                id="lesson-why-text",
            )
        return progress, measurements(lesson, steps, answers), why

    @app.callback(
        Output("lesson-download", "data"),
        Input("lesson-export", "n_clicks"),
        State("lesson-name", "value"),
        State("lesson-student", "value"),
        State({"type": "lesson-prediction", "lesson": ALL, "id": ALL}, "value"),
        State({"type": "lesson-prediction", "lesson": ALL, "id": ALL}, "id"),
        prevent_initial_call=True,
    )
    def export(clicks: Any, name: Any, student: Any, values: list[Any], ids: list[dict[str, Any]]) -> Any:
        lesson = lab.lesson(name)
        if not clicks or lesson is None:
            return no_update
        answers = predictions_of(lesson, values or [], ids or [])
        html_text = render_worksheet(lesson, lab.lesson_steps.get(name, {}), answers, student=str(student or "")[:200])
        safe_student = "".join(ch for ch in str(student or "") if ch.isalnum() or ch in "-_")[:40]
        filename = f"worksheet-{lesson.name}{'-' + safe_student if safe_student else ''}.html"
        return dcc.send_string(html_text, filename)
