"""Only what changed goes to the browser: values the page already shows come back as no_update."""

from __future__ import annotations

import json

from dash import Dash, Input, Output, State, html, no_update

from dashboard.changes import changed, changed_each, refresh_together, refreshing, ticked
from tests.unit.dashboard.panels.support import Callbacks


def as_browser_holds(value):
    return json.loads(json.dumps(value, default=lambda component: component.to_plotly_json()))


def test_a_value_the_page_shows_is_not_sent_again_and_a_new_one_is():
    assert changed("healthy", "healthy") is no_update
    assert changed("down", "healthy") == "down"
    assert changed(3, 3) is no_update and changed(False, True) is False
    table = html.Table([html.Tr([html.Td("gateway-1"), html.Td("0.8 s")])])
    assert changed(table, as_browser_holds(table)) is no_update
    other = html.Table([html.Tr([html.Td("gateway-1"), html.Td("0.9 s")])])
    assert changed(other, as_browser_holds(table)) is other
    assert changed("", None) == "" and changed(None, "x") is None


def test_each_component_of_a_pattern_output_gets_only_its_change():
    assert changed_each(["healthy", "down"], ["healthy", "healthy"]) == [no_update, "down"]
    # Tiles drawn anew (more or fewer than the page knew): everything is sent.
    assert changed_each(["healthy", "down"], ["healthy"]) == ["healthy", "down"]
    assert changed_each(["healthy"], None) == ["healthy"]


def test_a_refreshing_callback_answers_only_what_the_page_does_not_show_yet():
    app = Dash(__name__)
    app.layout = html.Div([html.Div(id="tick"), html.Div(id="a"), html.Div(id="b")])
    values = {"a": "one", "b": html.B("two")}

    @refreshing(app, [Output("a", "children"), Output("b", "children")], Input("tick", "title"))
    def refresh(_tick):
        return [values["a"], values["b"]]

    callbacks = Callbacks(app)
    assert callbacks.fire("tick", "title", "1") == {"a.children": "one", "b.children": as_browser_holds(values["b"])}
    shown = {"a": "one", "b": as_browser_holds(values["b"])}
    assert callbacks.fire("tick", "title", "2", state=shown) is None
    values["a"] = "three"
    assert callbacks.fire("tick", "title", "3", state=shown) == {"a.children": "three"}


def test_every_ticked_refresh_is_one_callback_and_a_failing_one_leaves_only_its_own_outputs(caplog):
    app = Dash(__name__)
    app.layout = html.Div([html.Div(id=n) for n in ("tick", "window", "a", "b", "chart", "broken")])
    values = {"a": "one", "b": "two"}

    @ticked(app, [Output("a", "children")])
    def first():
        return [values["a"]]

    @ticked(app, [Output("chart", "children")], State("window", "title"), compare=False)
    def chart(window):
        return [f"drawn over {window}"]

    @ticked(app, [Output("broken", "children")])
    def broken():
        raise RuntimeError("no sample yet")

    @ticked(app, [Output("b", "children")])
    def second():
        return [values["b"]]

    refresh_together(app)
    (key,) = app.callback_map
    callback = app.callback_map[key]
    assert [i["id"] for i in callback["inputs"]] == ["tick"]
    # What the page shows is sent up for the compared outputs only, not for the chart.
    assert sorted(s["id"] for s in callback["state"]) == ["a", "b", "broken", "window"]
    callbacks = Callbacks(app)
    first_answer = callbacks.fire("tick", "n_intervals", 1, state={"window": "5 min"})
    assert first_answer == {"a.children": "one", "chart.children": "drawn over 5 min", "b.children": "two"}
    assert "no sample yet" in caplog.text
    values["b"] = "three"
    shown = {"a": "one", "b": "two", "window": "1 min"}
    assert callbacks.fire("tick", "n_intervals", 2, state=shown) == {
        "chart.children": "drawn over 1 min",
        "b.children": "three",
    }
