"""The orchestrator interface: list, kill, start, pause, resume, add and remove instances, in any mode.

The local-process implementation lives in :mod:`.local`; a Docker one fits the same interface.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

__all__ = ["PROCESS_STATES", "InstanceInfo", "Orchestrator", "OrchestratorError", "UnknownInstance"]

PROCESS_STATES = ("running", "paused", "stopped")


class OrchestratorError(RuntimeError):
    """An instance could not be started, stopped or changed; the message says which and what to do."""


class UnknownInstance(OrchestratorError, KeyError):
    """No instance has that name."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class InstanceInfo:
    """What the orchestrator knows of one instance."""

    name: str
    service: str
    port: int
    state: str  # one of PROCESS_STATES
    pid: int | None = None
    health_path: str = "/health"
    health: str | None = None  # when the orchestrator knows it (Docker's health checks); else probe health_path
    host: str = "127.0.0.1"  # where this machine reaches it (a container's name when not published)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Orchestrator(abc.ABC):
    """Controls the processes (or containers) of one ScaleLab stack."""

    @abc.abstractmethod
    def instances(self) -> list[InstanceInfo]:
        """Return every instance of the stack with its process state."""

    @abc.abstractmethod
    def kill(self, name: str) -> InstanceInfo:
        """Stop an instance at once, as a crash would (SIGKILL)."""

    @abc.abstractmethod
    def start(self, name: str) -> InstanceInfo:
        """Start a stopped instance again and wait until it is healthy."""

    @abc.abstractmethod
    def pause(self, name: str) -> InstanceInfo:
        """Freeze an instance: it keeps its connections but answers nothing (a hung process)."""

    @abc.abstractmethod
    def resume(self, name: str) -> InstanceInfo:
        """Unfreeze a paused instance."""

    @abc.abstractmethod
    def add(self, service: str) -> InstanceInfo:
        """Start one more instance of ``service`` (e.g. microservice-4) and wait until it is healthy."""

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Take an instance out of rotation, stop it and forget it (scale in).

        Only gateway and microservice instances, and never the last running one of its service.
        It is withdrawn from every balancing peer first, so no request is sent to it any more,
        then stopped (SIGTERM, SIGKILL after a grace period), then deleted from the stack.
        """

    def get(self, name: str) -> InstanceInfo:
        """Return the instance called ``name``; raise UnknownInstance naming the known ones."""
        instances = self.instances()
        for info in instances:
            if info.name == name:
                return info
        if not instances:
            raise UnknownInstance(f"no instance named {name!r}: no stack has been started here (`scalelab up`)")
        raise UnknownInstance(f"no instance named {name!r}; known: {', '.join(i.name for i in instances)}")
