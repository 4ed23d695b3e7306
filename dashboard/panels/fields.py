"""The page's number fields: one way to make them, so a typed value is never silently dropped."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc

__all__ = ["number_field", "typed_step"]


def typed_step(step: float, minimum: float) -> float | str:
    """Return the ``step`` for a number field that accepts every value a user may type.

    The browser takes only ``minimum + k * step`` as valid, and an invalid field reaches Dash as
    ``None``: with a minimum of 0.01 and a step of 0.1, a typed target of 0.5 became the default.
    Whole numbers from a whole minimum keep their step (the arrows count by it); anything else
    takes ``"any"``, and the service checks the range.
    """
    if step == 1 and float(minimum).is_integer():
        return 1
    return "any"


def number_field(
    id_: Any, value: float, step: float = 1, minimum: float = 0, maximum: float | None = None, width: str = "6rem"
) -> dbc.Input:
    """Return a small number input whose every typed value within its bounds reaches its callbacks."""
    return dbc.Input(
        id=id_,
        type="number",
        value=value,
        step=typed_step(step, minimum),
        min=minimum,
        max=maximum,
        size="sm",
        style={"width": width},
    )
