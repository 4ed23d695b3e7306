"""The stack a benchmark measures: one already running, or one it starts on spare ports and stops afterwards."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from scalelab.cli.main import cli
from scalelab.orchestrators import LocalOrchestrator


@contextmanager
def stack(run_dir: str | None, port_offset: int, purpose: str) -> Iterator[LocalOrchestrator]:
    """Use the stack running from ``run_dir``, or start one moved by ``port_offset`` for ``purpose``."""
    if run_dir:
        yield LocalOrchestrator(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix=f"scalelab-{purpose}-") as tmp:
        if cli(["--run-dir", tmp, "up", "--detach", "--port-offset", str(port_offset)]) != 0:
            sys.exit(f"could not start the stack for the {purpose}")
        try:
            yield LocalOrchestrator(tmp)
        finally:
            cli(["--run-dir", tmp, "down"])
