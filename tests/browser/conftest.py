"""Browser fixtures: Debian's Chromium driven by Playwright against the control page of the session stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.chromium import ARTIFACTS, chromium
from tests.stack import Stack


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for one test module.

    Playwright's sync API runs an event loop on this thread while it is open: closing it with the
    module lets later tests call asyncio.run().
    """
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, healthy_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Page]:
    """The control page of the healthy session stack, open in a fresh tab; a screenshot is kept after the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    outside: list[str] = []
    tab.on("request", lambda r: outside.append(r.url) if not r.url.startswith("http://127.0.0.1") else None)
    tab.goto(healthy_stack.url("dashboard") + "/")
    tab.wait_for_selector("[data-instance='load-balancer']")
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()
    assert not outside, f"the page asked for something beyond this machine: {outside[:5]}"
