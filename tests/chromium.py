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
RESOLVER_RULES = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    # Nothing but loopback: the page must work offline, and the test must not reach out.
    f"--host-resolver-rules={RESOLVER_RULES}",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium(names: tuple[str, ...] = ()) -> Iterator[Browser]:
    """Launch a headless Chromium; close it (and Playwright's event loop on this thread) afterwards.

    ``names`` resolve to 127.0.0.1 in this browser (a stand-in for other sites, and for DNS
    rebinding); every other name but 127.0.0.1 stays unresolvable.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's `chromium` (.ci/run does) or set SCALELAB_CHROMIUM")
    args = list(CHROMIUM_ARGS)
    if names:
        rules = ", ".join(f"MAP {name} 127.0.0.1" for name in names)
        args = [
            f"--host-resolver-rules={rules}, {RESOLVER_RULES}" if a.startswith("--host-resolver-rules=") else a
            for a in args
        ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            browser.close()
