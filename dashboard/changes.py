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
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dash import Dash, Input, Output, State, no_update

__all__ = ["TICK", "TICK_ID", "Refresh", "changed", "changed_each", "refresh_together", "refreshing", "ticked"]

log = logging.getLogger(__name__)

# The page's interval (its dcc.Interval in dashboard/layout.py): what every refresh runs on.
TICK_ID = "tick"
TICK = Input(TICK_ID, "n_intervals")


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


def _unless_shown(new: Any, shown: Any, output: Output) -> Any:
    """Return ``new`` for ``output``, or ``no_update`` where the page already shows it."""
    if new is no_update:
        return new
    return changed_each(new, shown) if isinstance(output.component_id, dict) else changed(new, shown)


def refreshing(
    app: Dash, outputs: list[Output], *inputs: Input | State
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function like ``app.callback(outputs, *inputs)``, sending only what changed.

    ``inputs`` may mix Inputs and States, as for ``app.callback``; the function gets their values in that order.

    The callback also reads what each output shows now, and returns ``no_update`` for each one that
    would show the same. The function returns one value per output, as for any multi-output callback.
    """
    shown_now = [State(output.component_id, output.component_property) for output in outputs]

    def register(function: Callable[..., Any]) -> Callable[..., Any]:
        @app.callback(outputs, *inputs, *shown_now)
        @functools.wraps(function)
        def refresh(*args: Any) -> Any:
            values, shown = args[: len(inputs)], args[len(inputs) :]
            new = function(*values)
            return [_unless_shown(v, s, o) for v, s, o in zip(new, shown, outputs, strict=True)]

        return refresh

    return register


@dataclass(frozen=True)
class Refresh:
    """What a panel redraws each interval: its outputs, and the function that returns their values.

    The function gets the values of ``states``. With ``compare``, an output the page already shows
    is not sent again; without it (charts, new every interval) the page does not send them up.
    """

    outputs: list[Output]
    function: Callable[..., Sequence[Any]]
    states: tuple[State, ...] = ()
    compare: bool = True


# Refreshes registered with ``ticked`` and not yet made into the app's one callback.
_pending: weakref.WeakKeyDictionary[Dash, list[Refresh]] = weakref.WeakKeyDictionary()


def ticked(
    app: Dash, outputs: list[Output], *states: State, compare: bool = True
) -> Callable[[Callable[..., Sequence[Any]]], Callable[..., Sequence[Any]]]:
    """Run the decorated function each interval for ``outputs``, together with the page's other refreshes.

    It gets the values of ``states`` and returns one value per output; with ``compare`` only what
    changed is sent (as with :func:`refreshing`). :func:`refresh_together` then makes every
    refresh of ``app`` one callback: each callback answer, even an empty one, makes Dash's
    renderer notify every component of the page several times, and the page's refreshes, each
    its own callback, kept Chromium's main thread busy for most of every second under load
    (docs/benchmarks.md). So every output must be on the page from the start: one missing (a
    view drawn later, such as a lesson's) would stop the refresh of every card.
    """

    def register(function: Callable[..., Sequence[Any]]) -> Callable[..., Sequence[Any]]:
        _pending.setdefault(app, []).append(Refresh(outputs, function, states, compare))
        return function

    return register


def refresh_together(app: Dash) -> None:
    """Register the refreshes ``ticked`` collected for ``app`` as one callback on the page's interval.

    A refresh that fails leaves its outputs as they are (and its traceback in the log); the
    others still show what is new.
    """
    refreshes = _pending.pop(app, [])
    if not refreshes:
        return
    outputs = [output for refresh in refreshes for output in refresh.outputs]
    compared = [output for refresh in refreshes if refresh.compare for output in refresh.outputs]
    shown_now = [State(output.component_id, output.component_property) for output in compared]
    states = [state for refresh in refreshes for state in refresh.states]

    @app.callback(outputs, TICK, *shown_now, *states)
    def refresh_all(_n: int | None, *args: Any) -> list[Any]:
        shown = iter(args[: len(shown_now)])
        given = iter(args[len(shown_now) :])
        sent: list[Any] = []
        for refresh in refreshes:
            values_of_states = [next(given) for _ in refresh.states]
            try:
                new = list(refresh.function(*values_of_states))
            except Exception:
                log.exception("refreshing %s failed", [str(output) for output in refresh.outputs])
                new = [no_update] * len(refresh.outputs)
            for value, output in zip(new, refresh.outputs, strict=True):
                if refresh.compare:
                    value = _unless_shown(value, next(shown), output)
                sent.append(value)
        return sent
