"""What the page does: each panel's callbacks, registered together.

Every callback reads the Lab's latest sample (taken in the background) or hands an action to the
Lab; none waits on the stack, so each finishes well inside the refresh interval.
"""

from __future__ import annotations

from types import ModuleType

from dash import Dash

from dashboard.lab import Lab
from dashboard.panels import actions, autoscaler, experiments, failover, grafana, knobs, lessons, live, load, topology

__all__ = ["PANELS", "register"]

# Each with a ``register(app, lab)``, in the page's order.
PANELS: tuple[ModuleType, ...] = (
    actions, topology, load, knobs, live, autoscaler, failover, lessons, experiments, grafana,
)  # fmt: skip


def register(app: Dash, lab: Lab) -> None:
    """Wire every panel's callbacks to ``lab``."""
    for panel in PANELS:
        panel.register(app, lab)
