"""Request inputs read safely: a JSON body and bounded numeric query parameters.

Whatever a client sends, a route either gets a value it can use or the client gets a 4xx JSON
error naming the input and what it takes; no input reaches a parser that could raise a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from flask import request

from .errors import ApiError

__all__ = ["MAX_SHOWN_CHARS", "int_arg", "json_body", "parse_json", "shown"]

# An error message quotes at most this much of what the client sent: enough to recognise it,
# never a megabyte echoed back.
MAX_SHOWN_CHARS = 40
JSON_EXAMPLE = "-H 'Content-Type: application/json' -d '{...}'"


def shown(raw: object) -> str:
    """Return ``repr(raw)`` cut to :data:`MAX_SHOWN_CHARS` characters for an error message."""
    text = repr(raw)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def _refuse_constant(name: str) -> NoReturn:
    # Python's json reads NaN and Infinity, but they are not JSON: stored, they would be served
    # back as a body no JSON parser accepts.
    raise ApiError(400, f"the JSON body contains {name}, which is not a JSON number; send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses as inf: as bad as Infinity itself
        raise ApiError(400, f"the JSON body contains {shown(text)}, too large for a number; send a finite number")
    return value


def parse_json(raw: bytes | str) -> Any:
    """Return ``raw`` parsed as JSON; raise a 400 ApiError when it is not JSON a service can store and serve."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ApiError(400, "the JSON body is nested too deeply; send a flatter document") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer of more than 4300 digits
        raise ApiError(400, f"the body is not valid JSON ({exc}); send e.g. {JSON_EXAMPLE}") from None


def json_body() -> Any:
    """Return the request's JSON body; raise a 400 ApiError when it is missing, malformed or not storable.

    The body is read as JSON whatever its Content-Type says, as the balancer does: `curl -d`
    sends form encoding by default, and a lab user should not have to know that. A body over
    the app's ``MAX_CONTENT_LENGTH`` gets a 413 before it is read.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, f"expected a JSON body, e.g. {JSON_EXAMPLE}")
    return parse_json(raw)


def int_arg(name: str, default: int, minimum: int, maximum: int) -> int:
    """Return query parameter ``name`` as a whole number in ``[minimum, maximum]`` (``default`` when absent).

    Only ASCII digits (and a leading ``-`` when ``minimum`` is negative) are read: ``str.isdigit``
    also accepts ``²`` and other digits ``int`` refuses, and a string of a million digits would
    cost ``int`` a long time for a value out of range anyway.
    """
    raw = request.args.get(name)
    if raw is None:
        return default
    digits = raw[1:] if raw.startswith("-") and minimum < 0 else raw
    longest = max(len(str(abs(minimum))), len(str(abs(maximum))))
    if digits.isascii() and digits.isdigit() and len(digits) <= longest:
        value = int(raw)
        if minimum <= value <= maximum:
            return value
    raise ApiError(400, f"{name} must be a whole number from {minimum} to {maximum}, not {shown(raw)}", parameter=name)
