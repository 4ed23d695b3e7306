"""What a user does and reads on the control page, as a small page object for the browser tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Locator, Page

from dashboard.lab import knob_key

POLL_MS = 100


def dash_id(**parts: str) -> str:
    """Return the CSS selector of a Dash pattern-matching id (keys sorted, as Dash writes them)."""
    return "[id='" + json.dumps(dict(sorted(parts.items())), separators=(",", ":")) + "']"


class ControlPage:
    """The control page in a browser tab."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def press(self, action: str, instance: str) -> float:
        """Press an instance's button; return the time of the press."""
        button = self.page.locator(dash_id(type="instance-action", action=action, name=instance))
        button.wait_for()
        self.page.wait_for_function(
            "s => !document.querySelector(s).disabled",
            arg=dash_id(type="instance-action", action=action, name=instance),
        )
        pressed = time.monotonic()
        # As a person clicks: at once. Playwright's own wait for the button to stop moving (the
        # tiles' live figures change its neighbours' widths every second) is not the page's delay.
        button.click(force=True)
        return pressed

    def scale(self, service: str, direction: str) -> None:
        """Press + add (``out``) or - remove (``in``) for a service."""
        self.page.click(dash_id(type="scale", service=service, direction=direction))

    def state(self, instance: str) -> str | None:
        """Return the state badge of an instance's tile (None when it has no tile)."""
        badge = self.page.locator(f"[data-instance='{instance}'] .badge")
        return badge.text_content() if badge.count() else None

    def detail(self, instance: str) -> str:
        """Return the line of figures under an instance's tile (empty when it has no tile)."""
        line = self.page.locator(dash_id(type="tile-detail", name=instance))
        return (line.text_content() or "") if line.count() else ""

    def wait_state(self, instance: str, state: str, timeout: float) -> float:
        """Wait until the tile shows ``state``; return when it did (monotonic)."""
        self.page.wait_for_function(
            "([name, state]) => { const b = document.querySelector(`[data-instance='${name}'] .badge`);"
            " return b && b.textContent === state; }",
            arg=[instance, state],
            timeout=timeout * 1000,
            polling=POLL_MS,
        )
        return time.monotonic()

    def start_load(self, users: int, rate: float, **mix: int) -> None:
        """Fill the load form and press Start load."""
        self.page.fill("#load-users", str(users))
        self.page.fill("#load-rate", str(rate))
        for option, weight in mix.items():
            self.page.fill(f"#load-{option}", str(weight))
        self.page.click("#load-start")

    def stop_load(self) -> None:
        """Press Stop load."""
        self.page.click("#load-stop")

    def knob(self, service: str, knob: str) -> Locator:
        """Return the control of a service's knob (``knob-<service>__<knob>``)."""
        return self.page.locator(f"#knob-{knob_key(service, knob)}")

    def apply_knob(self, service: str, knob: str, value: float) -> None:
        """Type a number knob's value and press its apply button."""
        self.knob(service, knob).fill(str(value))
        self.page.click(f"#apply-{knob_key(service, knob)}")

    def pick_instance(self, service: str, instance: str) -> None:
        """Pick the instance a service's per-instance knobs are set on (once the picker lists it)."""
        picker = f"#knob-instance-{service}"
        self.page.locator(f"{picker} option[value='{instance}']").wait_for(state="attached")
        self.page.select_option(picker, instance)

    def chart(self, chart: str) -> dict[str, list[Any]]:
        """Return the lines a chart draws now, by their legend name (values oldest first)."""
        return self.page.evaluate(
            "id => { const g = document.querySelector(`#chart-${id} .js-plotly-plot`);"
            " return g && g.data ? Object.fromEntries(g.data.map(t => [t.name, t.y])) : {}; }",
            chart,
        )

    def since(self, chart: str, epoch_seconds: float) -> dict[str, list[Any]]:
        """Return the values each line of a chart draws from ``epoch_seconds`` on (its x axis is epoch ms)."""
        return self.page.evaluate(
            "([id, since]) => { const g = document.querySelector(`#chart-${id} .js-plotly-plot`);"
            " if (!g || !g.data) return {};"
            " return Object.fromEntries(g.data.map(t => [t.name, t.y.filter((_, i) => t.x[i] >= since)])); }",
            [chart, epoch_seconds * 1000],
        )

    def latest(self, chart: str) -> dict[str, float | None]:
        """Return each line's newest value."""
        return {name: (values[-1] if values else None) for name, values in self.chart(chart).items()}

    def wait_for(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``condition`` (while the page keeps refreshing) until it is truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            self.page.wait_for_timeout(250)
        raise AssertionError(f"the page did not show {what} within {timeout:.0f} s")
