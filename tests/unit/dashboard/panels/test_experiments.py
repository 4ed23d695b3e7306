"""The experiments panel: the built-in experiments to run, their progress, and the reports."""

from __future__ import annotations

from dash import Dash

from dashboard.callbacks import register as register_panels
from dashboard.lab import ExperimentRun, Lab
from dashboard.panels import experiments
from scalelab.experiments import builtin_names

from .support import Callbacks, ids, text


def test_the_card_offers_every_built_in_experiment(lab: Lab):
    card = experiments.card(lab)
    assert ids(card) == [
        "experiment-name",
        "experiment-run",
        "experiment-running",
        "experiment-progress",
        "experiment-message",
        "experiment-results",
    ]
    shown = text(card)
    for name in builtin_names():
        assert f'"value": "{name}"' in shown


def test_reports_are_rows_with_their_verdict_and_a_link():
    runs = [
        {"directory": "/r/2024-01-01-load-balancing", "experiment": "load-balancing", "passed": True, "checks": []},
        {
            "directory": "/r/2024-01-01-caching",
            "experiment": "caching",
            "passed": False,
            "checks": [{"label": "hit ratio above 0.8", "passed": False}, {"label": "no errors", "passed": True}],
        },
    ]
    shown = text(experiments.experiment_results(runs))
    assert '"id": "experiment-reports"' in shown
    assert '"data-experiment": "caching"' in shown and "hit ratio above 0.8" in shown and "no errors" not in shown
    assert '"href": "/results/2024-01-01-load-balancing/report.html"' in shown
    assert "No reports yet." in text(experiments.experiment_results([]))


def test_each_interval_the_progress_of_the_running_experiment_shows(app: Dash, lab: Lab):
    lab.experiment = ExperimentRun("caching", running=True, fraction=0.25, message="warming the cache")
    register_panels(app, lab, [experiments])
    shown = Callbacks(app).fire("tick", "n_intervals", 1)
    assert shown["experiment-progress.value"] == 25 and shown["experiment-progress.label"] == "25%"
    assert shown["experiment-message.children"] == "caching: warming the cache"
    assert shown["experiment-run.disabled"] is True


def test_running_an_unknown_experiment_is_a_failed_action(app: Dash, lab: Lab):
    register_panels(app, lab, [experiments])
    callbacks = Callbacks(app)
    assert callbacks.fire("experiment-run", "n_clicks", 1, state={"experiment-name": None}) is None
    callbacks.fire("experiment-run", "n_clicks", 2, state={"experiment-name": "../etc/passwd"})
    action = lab.actions.latest()
    assert action.outcome == "failed" and "the built-in experiments it lists" in action.message
    assert action.target == "refused"  # a value from the browser never becomes a metric label
