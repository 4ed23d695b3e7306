"""Fixtures shared by the unit tests: clocks, registries, canned HTTP servers on 127.0.0.1, a stack client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from scalelab.orchestrators.local import LocalOrchestrator
from scalelab.stack import StackClient
from tests.unit.standins import CannedServer

from .support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock that stands still until the test advances it."""
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh Prometheus registry, so metrics never leak between tests."""
    return CollectorRegistry()


@pytest.fixture
def serve() -> Iterator[Callable[[], CannedServer]]:
    """Start as many canned servers as a test asks for; stop them all afterwards."""
    started: list[CannedServer] = []

    def start() -> CannedServer:
        server = CannedServer()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: Callable[[], CannedServer]) -> CannedServer:
    """One canned server."""
    return serve()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[StackClient]:
    """A stack client over an empty local stack (tests pass the instances in by hand)."""
    stack = StackClient(LocalOrchestrator(tmp_path), admin_token=lambda: "t", timeout=0.5)
    yield stack
    stack._pool.shutdown()  # its probe threads, so tests do not pile them up
    stack._session.close()
