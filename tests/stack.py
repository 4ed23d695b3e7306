"""A real local stack for the tests that need one, started and stopped through the `scalelab` CLI."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from scalelab import catalog
from scalelab.cli.main import cli
from scalelab.orchestrators import LocalOrchestrator

# Candidate offsets: the suite runs beside a developer's own stack on the classic ports.
PORT_OFFSETS = (20_000, 21_000, 22_000, 23_000)
REQUEST_TIMEOUT = 10.0


def _all_free(offset: int) -> bool:
    for port in (port for svc in catalog.SERVICES if svc.local for port in svc.ports):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port + offset))
            except OSError:
                return False
    return True


@dataclass
class Stack:
    """A running stack: where each instance listens, the admin token, and the orchestrator."""

    orchestrator: LocalOrchestrator
    offset: int
    admin_token: str

    def url(self, instance: str) -> str:
        return f"http://127.0.0.1:{self.orchestrator.get(instance).port}"

    @property
    def lb(self) -> str:
        return self.url("load-balancer")

    def services(self) -> list:
        """Return the ScaleLab service instances (not Prometheus, the load engine or the control app beside them)."""
        lab = {svc.name for svc in catalog.lab_services()}
        return [info for info in self.orchestrator.instances() if info.service in lab]

    def admin(self) -> dict[str, str]:
        return {"X-Admin-Token": self.admin_token}

    def token(self) -> str:
        response = requests.get(self.lb + "/token", timeout=REQUEST_TIMEOUT)
        response.raise_for_status()
        return response.json()["token"]

    def auth(self) -> dict[str, str]:
        return {"Authorization": self.token()}

    def control(self, instance: str, **knobs: Any) -> dict[str, Any]:
        response = requests.put(
            self.url(instance) + "/control", json=knobs, headers=self.admin(), timeout=REQUEST_TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response.json()

    def heal(self) -> None:
        """Bring every instance back to running and healthy (tests kill and pause them)."""
        for info in self.orchestrator.instances():
            if info.state == "paused":
                self.orchestrator.resume(info.name)
            elif info.state == "stopped":
                self.orchestrator.start(info.name)
        wait_for(lambda: all(b["healthy"] for b in requests.get(self.lb + "/lb/status", timeout=2).json()["backends"]))
        # A gateway that saw the cache fail bypasses it for a moment; wait until both use it again.
        gateways = [info.name for info in self.orchestrator.instances() if info.service == "gateway"]
        for gateway in gateways:
            wait_for(lambda g=gateway: requests.get(self.url(g) + "/health", timeout=2).json()["cache"] == "available")


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test, naming ``what``, after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout} s")


def free_offset() -> int:
    """Return a port offset at which every instance's port is free."""
    offset = next((o for o in PORT_OFFSETS if _all_free(o)), None)
    if offset is None:
        pytest.fail(f"no free port range for a test stack (tried offsets {PORT_OFFSETS})")
    return offset


@contextlib.contextmanager
def started_stack(run_dir: Path) -> Iterator[Stack]:
    """Start a whole stack with `scalelab up --detach` on free ports; stop it with `scalelab down`."""
    offset = free_offset()
    assert cli(["--run-dir", str(run_dir), "up", "--detach", "--port-offset", str(offset)]) == 0
    state = json.loads((run_dir / "state.json").read_text())
    try:
        yield Stack(LocalOrchestrator(run_dir), offset, state["secrets"]["admin_token"])
    finally:
        assert cli(["--run-dir", str(run_dir), "down"]) == 0
