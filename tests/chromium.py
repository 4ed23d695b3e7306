"""Debian's Chromium under Playwright, kept off every network but loopback."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("SCALELAB_CHROMIUM", "/usr/bin/chromium")
# Screenshots of the browser tests land here (CI keeps them as artifacts).
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


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Launch a headless Chromium; close it (and Playwright's event loop on this thread) afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does) or set SCALELAB_CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
