"""Send the browser only what changed.

Dash's renderer redraws every property a callback returns, changed or not, and each one it
applies notifies every component of the page: with a page of about 640 components, the
unchanged tiles, banners and tables re-sent each second kept Chromium's main thread busy for
most of every second, and a click waited behind that work (docs/benchmarks.md). A callback
that refreshes also reads what the page shows now (a ``State`` of its own output) and returns
``no_update`` where the two are the same.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from dash import Dash, Input, Output, State, no_update

__all__ = ["changed", "changed_each", "refreshing"]


def _component_json(component: Any) -> Any:
    return component.to_plotly_json()  # what Dash sends of a component: its type, namespace and props


def _as_shown(value: Any) -> Any:
    """Return ``value`` as the browser holds it: components as their JSON form."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(json.dumps(value, default=_component_json))


def changed(new: Any, shown: Any) -> Any:
    """Return ``new``, or ``no_update`` when the page already shows it."""
    return no_update if _as_shown(new) == shown else new


def changed_each(new: list[Any], shown: list[Any] | None) -> list[Any]:
    """For a pattern output (one value per component): ``no_update`` for each component that already shows its value."""
    if shown is None or len(shown) != len(new):
        return new
    return [changed(value, now) for value, now in zip(new, shown, strict=True)]


def _changed_any(new: Any, shown: Any, pattern: bool) -> Any:
    if new is no_update:
        return new
    return changed_each(new, shown) if pattern else changed(new, shown)


def refreshing(app: Dash, outputs: list[Output], *inputs: Input) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function like ``app.callback(outputs, *inputs)``, sending only what changed.

    The callback also reads what each output shows now, and returns ``no_update`` for each one that
    would show the same. The function returns one value per output, as for any multi-output callback.
    """
    shown_now = [State(output.component_id, output.component_property) for output in outputs]
    patterns = [isinstance(output.component_id, dict) for output in outputs]

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        @app.callback(outputs, *inputs, *shown_now)
        @functools.wraps(function)
        def refresh(*args: Any) -> Any:
            values, shown = args[: len(inputs)], args[len(inputs) :]
            new = function(*values)
            return [_changed_any(v, s, p) for v, s, p in zip(new, shown, patterns, strict=True)]

        return refresh

    return register
