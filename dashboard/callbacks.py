"""What the page does: each panel's callbacks, registered together.

Every callback reads the Lab's latest sample (taken in the background) or hands an action to the
Lab; none waits on the stack, so each finishes well inside the refresh interval.
"""

from __future__ import annotations

from dash import Dash

from dashboard.lab import Lab
from dashboard.panels import PANELS

__all__ = ["PANELS", "register"]


def register(app: Dash, lab: Lab) -> None:
    """Wire every panel's callbacks to ``lab``."""
    for panel in PANELS:
        panel.register(app, lab)
