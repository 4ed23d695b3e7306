"""Runtime knobs: named, validated settings a running service lets the control API change.

Every knob is also exported as a Prometheus gauge so a chart shows when it changed.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .errors import ApiError
from .inputs import shown

__all__ = ["MAX_KNOB_MAGNITUDE", "Knob", "Knobs"]

# Every numeric knob is also a float gauge: beyond 2**53 a float no longer holds each whole number,
# and an int past the float range would make every later scrape of /metrics fail.
MAX_KNOB_MAGNITUDE = 2**53


def _finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


@dataclass
class Knob:
    """One runtime setting: its type, its allowed range or choices, and its current value."""

    name: str
    value: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    # A choice knob that was once a switch: false and true still name two of its choices (off, on).
    switch: tuple[str, str] | None = None
    kind: type = field(init=False)

    def __post_init__(self) -> None:
        self.kind = type(self.value)
        self.value = self.coerce(self.value)

    def coerce(self, raw: Any) -> Any:
        """Return ``raw`` converted to this knob's type; raise a 400 ApiError when it does not fit."""
        if self.kind is bool:
            if not isinstance(raw, bool):
                raise ApiError(400, f"knob {self.name!r} takes true or false, not {raw!r}")
            return raw
        if self.kind in (int, float):
            # Python compares ints and floats exactly, so nothing below converts a huge int to a float.
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not _finite(raw):
                raise ApiError(400, f"knob {self.name!r} takes a number, not {shown(raw)}")
            if (self.minimum is not None and raw < self.minimum) or (self.maximum is not None and raw > self.maximum):
                raise ApiError(
                    400, f"knob {self.name!r} must lie in [{self.minimum}, {self.maximum}], not {shown(raw)}"
                )
            if abs(raw) > MAX_KNOB_MAGNITUDE:
                raise ApiError(
                    400, f"knob {self.name!r} takes a number from {-MAX_KNOB_MAGNITUDE} to {MAX_KNOB_MAGNITUDE}"
                )
            if self.kind is int and int(raw) != raw:
                raise ApiError(400, f"knob {self.name!r} takes a whole number, not {shown(raw)}")
            return self.kind(raw)
        if self.switch is not None and isinstance(raw, bool):
            raw = self.switch[raw]
        if not isinstance(raw, str) or (self.choices is not None and raw not in self.choices):
            raise ApiError(400, f"knob {self.name!r} takes one of {list(self.choices or [])}, not {shown(raw)}")
        return raw

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of the values :meth:`coerce` takes (for the API document)."""
        if self.kind is bool:
            return {"type": "boolean"}
        if self.kind in (int, float):
            return {
                "type": "integer" if self.kind is int else "number",
                "minimum": -MAX_KNOB_MAGNITUDE if self.minimum is None else max(self.minimum, -MAX_KNOB_MAGNITUDE),
                "maximum": MAX_KNOB_MAGNITUDE if self.maximum is None else min(self.maximum, MAX_KNOB_MAGNITUDE),
            }
        text = {"type": "string", "enum": list(self.choices)} if self.choices is not None else {"type": "string"}
        return text if self.switch is None else {"anyOf": [text, {"type": "boolean"}]}

    def describe(self) -> dict[str, Any]:
        """Return the knob as JSON for ``GET /control``."""
        out: dict[str, Any] = {"value": self.value, "type": self.kind.__name__, "doc": self.doc}
        if self.minimum is not None:
            out["min"] = self.minimum
        if self.maximum is not None:
            out["max"] = self.maximum
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out


Listener = Callable[[str, Any], None]


class Knobs(Collector):
    """A service's knobs: read them by name on the hot path, change them all-or-nothing."""

    def __init__(self, knobs: Iterable[Knob], registry: CollectorRegistry | None = None) -> None:
        self._knobs = {knob.name: knob for knob in knobs}
        self._values = {name: knob.value for name, knob in self._knobs.items()}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        if registry is not None:
            registry.register(self)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: str) -> bool:
        return name in self._knobs

    def add(self, knob: Knob) -> None:
        """Add a knob after construction (e.g. a weight for a backend added at runtime)."""
        with self._lock:
            # New dicts rather than in-place changes: a scrape or snapshot iterating the old ones never
            # sees one change size under it.
            self._knobs = {**self._knobs, knob.name: knob}
            self._values = {**self._values, knob.name: knob.value}

    def remove(self, name: str) -> None:
        """Remove a knob (e.g. the weight of a backend taken out of its pool); raise KeyError when unknown."""
        with self._lock:
            if name not in self._knobs:
                raise KeyError(f"no knob {name!r}; known: {sorted(self._knobs)}")
            self._knobs = {key: knob for key, knob in self._knobs.items() if key != name}
            self._values = {key: value for key, value in self._values.items() if key != name}

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(name, value)`` after each knob changes."""
        self._listeners.append(listener)

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of a ``PUT /control`` body: one or more of the knobs there are now."""
        return {
            "type": "object",
            "description": "Knob names and their new values (GET /control lists them, with their limits).",
            "properties": {name: knob.json_schema() for name, knob in self._knobs.items()},
            "additionalProperties": False,
            "minProperties": 1,
        }

    def snapshot(self) -> dict[str, Any]:
        """Return every knob with its value, type and limits."""
        return {name: knob.describe() for name, knob in self._knobs.items()}

    def values(self) -> dict[str, Any]:
        """Return the current value of every knob."""
        return dict(self._values)

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate every change first, then apply them together; return the knobs that changed."""
        if not isinstance(changes, Mapping) or not changes:
            raise ApiError(400, f"send a JSON object of knob values, e.g. {{{next(iter(self._knobs), 'knob')!r}: ...}}")
        unknown = sorted(set(changes) - set(self._knobs))
        if unknown:
            raise ApiError(400, f"unknown knob(s) {unknown}; known: {sorted(self._knobs)}")
        coerced = {name: self._knobs[name].coerce(raw) for name, raw in changes.items()}
        with self._lock:
            gone = sorted(set(coerced) - set(self._knobs))
            if gone:  # removed since the check above (its backend left the pool): change nothing
                raise ApiError(400, f"unknown knob(s) {gone}; known: {sorted(self._knobs)}")
            for name, value in coerced.items():
                self._knobs[name].value = value
            # Replace the dict so readers on the hot path never see a half-applied change.
            self._values = {name: knob.value for name, knob in self._knobs.items()}
        for name, value in coerced.items():
            for listener in self._listeners:
                listener(name, value)
        return coerced

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """Export numeric knobs as ``scalelab_knob_value`` and choice knobs as ``scalelab_knob_choice``."""
        values = GaugeMetricFamily("scalelab_knob_value", "Current value of a runtime knob.", labels=["knob"])
        choices = GaugeMetricFamily(
            "scalelab_knob_choice", "Runtime knob with a named value (1 for the chosen one).", labels=["knob", "value"]
        )
        for name, knob in self._knobs.items():
            if knob.kind is str:
                for choice in knob.choices or (knob.value,):
                    choices.add_metric([name, choice], 1.0 if choice == knob.value else 0.0)
            else:
                values.add_metric([name], float(knob.value))
        yield values
        yield choices
