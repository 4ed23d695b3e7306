"""What the page does: each panel's callbacks, registered together.

Every callback reads the Lab's latest sample (taken in the background) or hands an action to the
Lab; none waits on the stack, so each finishes well inside the refresh interval.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from dash import Dash

from dashboard.changes import refresh_together
from dashboard.lab import Lab
from dashboard.panels import PANELS

__all__ = ["PANELS", "register"]


def register(app: Dash, lab: Lab, panels: Iterable[ModuleType] = PANELS) -> None:
    """Wire the callbacks of ``panels`` (every panel) to ``lab``; their refreshes run as one callback."""
    for panel in panels:
        panel.register(app, lab)
    refresh_together(app)
