"""Helpers of the experiments' tests: an orchestrator that only keeps a table of instances."""

from __future__ import annotations

from dataclasses import replace

from scalelab.catalog import Pool
from scalelab.orchestrators.base import InstanceInfo, Orchestrator, UnknownInstance


class FakeOrchestrator(Orchestrator):
    """Instances in a dict; every action changes their state there and is recorded in ``calls``."""

    def __init__(self, instances: list[InstanceInfo]) -> None:
        self.table = {info.name: info for info in instances}
        self.calls: list[tuple[str, str]] = []

    def instances(self) -> list[InstanceInfo]:
        return list(self.table.values())

    def _set(self, verb: str, name: str, state: str) -> InstanceInfo:
        if name not in self.table:
            raise UnknownInstance(f"no instance named {name!r}")
        self.calls.append((verb, name))
        self.table[name] = replace(self.table[name], state=state)
        return self.table[name]

    def kill(self, name: str) -> InstanceInfo:
        return self._set("kill", name, "stopped")

    def start(self, name: str) -> InstanceInfo:
        return self._set("start", name, "running")

    def pause(self, name: str) -> InstanceInfo:
        return self._set("pause", name, "paused")

    def resume(self, name: str) -> InstanceInfo:
        return self._set("resume", name, "running")

    # Scaling: the base class's policy runs; these primitives change the table.
    def _start_new(self, service: str) -> InstanceInfo:
        number = 1 + max((int(n.rpartition("-")[2]) for n, i in self.table.items() if i.service == service), default=0)
        info = InstanceInfo(f"{service}-{number}", service, 1, "running")
        self.table[info.name] = info
        self.calls.append(("add", service))
        return info

    def _announce(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo]) -> None:
        """No pools to tell here."""

    def _withdraw(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo], others: list[InstanceInfo]) -> None:
        """No pools to tell here."""

    def _stop_and_forget(self, info: InstanceInfo, pool: Pool) -> None:
        self.calls.append(("remove", info.name))
        del self.table[info.name]
