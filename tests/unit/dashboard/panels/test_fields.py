"""Number fields take every value a user types: the browser drops a value off the arrows' grid."""

from __future__ import annotations

import pytest

from dashboard.panels import fields


@pytest.mark.parametrize(
    ("step", "minimum", "typed"), [(0.1, 0.01, 0.5), (0.5, 0.1, 1), (0.5, 0.001, 30), (5, 0, 12), (0.05, 0, 0.33)]
)
def test_a_number_field_accepts_what_a_user_types_off_the_arrows_grid(step, minimum, typed):
    # The browser hands Dash None for a value off min + k * step: a typed 0.5 became the default.
    field = fields.number_field("x", 1, step, minimum)
    assert field.step == "any" or ((typed - minimum) / field.step).is_integer()


def test_whole_number_fields_keep_their_arrows_step():
    assert fields.number_field("users", 5, 1, 1).step == 1
