"""Browser fixtures: Debian's Chromium driven by Playwright against the control page of the session stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.stack import Stack

CHROMIUM = os.environ.get("SCALELAB_CHROMIUM", "/usr/bin/chromium")
# Screenshots of every browser test land here (CI keeps them as artifacts).
ARTIFACTS = Path(os.environ.get("SCALELAB_ARTIFACTS", "test-artifacts")) / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    # Nothing but loopback: the page must work offline, and the test must not reach out.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for one test module.

    Playwright's sync API runs an event loop on this thread while it is open: closing it with the
    module lets later tests call asyncio.run().
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does) or set SCALELAB_CHROMIUM")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


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
