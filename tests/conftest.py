"""Settings for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.stack import Stack, started_stack

# The CLI acts on a running compose stack when it finds one; tests that call it with their own
# run directory mean their own local processes, whatever else runs on the machine.
os.environ.setdefault("SCALELAB_ORCHESTRATOR", "local")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The one real stack the integration and browser tests share."""
    with started_stack(tmp_path_factory.mktemp("run")) as running:
        yield running


@pytest.fixture
def healthy_stack(stack: Stack) -> Iterator[Stack]:
    """The session stack, with every instance running and healthy before and after the test."""
    stack.heal()
    yield stack
    stack.heal()
