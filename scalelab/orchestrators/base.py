"""The orchestrator interface: list, kill, start, pause, resume, add and remove instances, in any mode.

Each engine (local processes, Docker) implements the primitives; the policy that every engine
shares lives here once: which services scale, never removing the last running instance, and
taking an instance out of every pool that balances it before it is stopped.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scalelab import catalog
from scalelab.catalog import Pool

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

    #: Where the stack is, in words (`scalelab status` says "no stack has been started <where>").
    where: str = ""
    #: Where experiments against this stack write their reports unless told otherwise.
    results_dir: Path | None = None
    #: Whether each instance gets the catalog's CPU and memory limits (containers) rather than sharing the machine.
    limits_instances: bool = False
    #: Where reports written by :meth:`run_control` show up on this machine, in words; None: copy them out.
    reports_seen_at: str | None = None

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

    def admin_token(self) -> str | None:
        """Return the running stack's admin token when the orchestrator keeps it (a local stack does)."""
        return None

    def reaches_pools(self) -> bool:
        """Return whether this process can call every instance's control routes (else: run_control)."""
        return True

    def run_control(self, command: list[str], files: dict[str, bytes] | None = None) -> tuple[int, str]:
        """Run a control-plane command where every instance can be reached; return its exit code and output.

        Only needed where :meth:`reaches_pools` is False (a compose stack seen from the host).
        """
        raise OrchestratorError("this stack's instances are reachable from here: run the command directly")

    def fetch_results(self, path: str, destination: Path) -> Path:
        """Copy a report folder written by :meth:`run_control` at ``path`` into ``destination``; return its copy."""
        raise OrchestratorError(f"{path} is already on this machine")

    # ---------------------------------------------------------------- scaling: the shared policy
    def add(self, service: str) -> InstanceInfo:
        """Start one more instance of ``service`` (e.g. microservice-4), wait until healthy, put it in rotation."""
        svc = self._scaling(service, "add")
        with self._changing():
            running = [i for i in self.instances() if i.service == service]
            if len(running) >= svc.max_instances:
                raise OrchestratorError(
                    f"cannot add a {service}: it already has {len(running)}, the most the catalog allows "
                    f"({svc.max_instances}); `scalelab remove` one first"
                )
            info = self._start_new(service)
        assert svc.pool is not None
        peers = [p for p in self.instances() if p.service == svc.pool.holder and p.state == "running"]
        self._announce(info, svc.pool, peers)
        return info

    def remove(self, name: str) -> None:
        """Take an instance out of rotation, stop it and forget it (scale in).

        Only instances of a service that scales, and never the last running one of its service.
        It is withdrawn from every balancing peer first, so no request is sent to it any more,
        then stopped (SIGTERM, SIGKILL after a grace period), then deleted from the stack.
        """
        # Held throughout, so that two removals at once cannot both pass the "not the last one" check.
        with self._changing():
            instances = self.instances()
            info = next((i for i in instances if i.name == name), None) or self.get(name)
            svc = self._scaling(info.service, "remove", name)
            others = [i for i in instances if i.name != name and i.service == info.service and i.state == "running"]
            if not others:
                raise OrchestratorError(
                    f"cannot remove {name}: it is the last running {info.service}, and without one every request "
                    f"that needs it would fail; `scalelab add {info.service}` (or start a stopped one) first"
                )
            assert svc.pool is not None
            peers = [i for i in instances if i.service == svc.pool.holder]
            paused = sorted(peer.name for peer in peers if peer.state == "paused")
            if paused:  # it could not drop the instance now, and would send to it once resumed
                raise OrchestratorError(
                    f"cannot remove {name}: {', '.join(paused)} is paused and cannot take it out of its pool; "
                    f"`scalelab resume {paused[0]}` first"
                )
            self._withdraw(info, svc.pool, [peer for peer in peers if peer.state == "running"], others)
            self._stop_and_forget(info, svc.pool)

    @staticmethod
    def _scaling(service: str, verb: str, name: str = "") -> catalog.Service:
        """Return the catalog entry of ``service``; raise OrchestratorError when it does not scale."""
        scalable = catalog.scalable()
        try:
            svc = catalog.service(service)
        except catalog.CatalogError:
            svc = None
        if svc is None or not svc.scales or svc.pool is None:
            what = f"{verb} {name}" if name else f"{verb} a {service!r}"
            hint = f"; `scalelab kill {name}` stops it" if name else ""
            direction = "out" if verb == "add" else "in"
            raise OrchestratorError(f"cannot {what}: only {' and '.join(scalable)} instances scale {direction}{hint}")
        return svc

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the engine's lock on the stack's membership while a scaling step runs (none by default)."""
        yield

    @abc.abstractmethod
    def _start_new(self, service: str) -> InstanceInfo:
        """Start the next instance of ``service`` with a fresh name and port; return it once healthy."""

    @abc.abstractmethod
    def _announce(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo]) -> None:
        """Add ``info`` to ``pool`` on every running peer that holds one."""

    @abc.abstractmethod
    def _withdraw(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo], others: list[InstanceInfo]) -> None:
        """Take ``info`` out of ``pool`` on every running peer; ``others`` run the same service."""

    @abc.abstractmethod
    def _stop_and_forget(self, info: InstanceInfo, pool: Pool) -> None:
        """Stop a withdrawn instance (SIGTERM, then SIGKILL) and delete it from the stack."""

    # ---------------------------------------------------------------- lookups
    def get(self, name: str) -> InstanceInfo:
        """Return the instance called ``name``; raise UnknownInstance naming the known ones."""
        instances = self.instances()
        for info in instances:
            if info.name == name:
                return info
        if not instances:
            raise UnknownInstance(
                f"no instance named {name!r}: no stack has been started {self.where or 'here'} (`scalelab up`)"
            )
        raise UnknownInstance(f"no instance named {name!r}; known: {', '.join(i.name for i in instances)}")
