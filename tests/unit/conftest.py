"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from .support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock that stands still until the test advances it."""
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh Prometheus registry, so metrics never leak between tests."""
    return CollectorRegistry()
