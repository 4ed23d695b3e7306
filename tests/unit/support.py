"""Helpers the unit tests share: a clock the test moves by hand, a deadline poll, a server on a spare port."""

from __future__ import annotations

import shutil
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


class FakeClock:
    """A clock (or cache timer) that only moves when the test calls :meth:`advance`."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)


class InThread:
    """Run a socketserver server (bound to 127.0.0.1 port 0) in a background thread until :meth:`stop`."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self.port: int = server.server_address[1]  # type: ignore[index]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval keeps shutdown() quick.
        self.thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def promtool_path() -> str:
    """Return promtool's path; fail naming the package that ships it (.ci/run installs it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: apt-get install prometheus (it ships promtool)")
    return path
