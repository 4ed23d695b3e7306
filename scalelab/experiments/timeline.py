"""Change the stack: actions at offsets from the load's start, setup actions, and putting it all back.

Instance actions go through the orchestrator, knobs through each instance's ``PUT /control``
with the admin token. Every executed action keeps its own clock readings, from which
scalelab.failover times detection and recovery. :class:`Undo` remembers what the stack was like
before the first change, so that the experiment leaves it as it found it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scalelab import actions, catalog
from scalelab.experiments.spec import Action
from scalelab.orchestrators.base import InstanceInfo, OrchestratorError
from scalelab.stack import ServiceError, StackClient

__all__ = ["ActionError", "Executed", "Executor", "Undo", "run_timeline", "wait_settled"]

SETTLE_TIMEOUT_SECONDS = 20.0
SETTLE_POLL_SECONDS = 0.1
ActionError = actions.ActionError


@dataclass(frozen=True)
class Executed:
    """An action as it was carried out: when it began and ended (epoch s), on what, and how it went."""

    label: str
    verb: str
    target: str
    started: float
    finished: float
    instances: tuple[str, ...] = ()  # the instances it acted on (an added one's new name)
    offset: float | None = None  # seconds from the load's start, for timeline actions
    error: str = ""

    @property
    def ok(self) -> bool:
        """Return whether the action succeeded."""
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        """Return it as JSON-ready data."""
        return {**asdict(self), "instances": list(self.instances)}


class Undo:
    """What the stack was like before an experiment changed it, and how to put it back."""

    def __init__(self, stack: StackClient) -> None:
        self.stack = stack
        self.states = {info.name: info.state for info in stack.instances()}
        self.knobs: dict[tuple[str, str], Any] = {}  # (instance, knob) -> value before the first change

    def remember(self, info: InstanceInfo, knobs: Iterable[str] | None = None) -> None:
        """Remember the current value of ``knobs`` on ``info`` (all of them when None), each the first time only.

        Before a kill too: an instance started again comes back with its configured values, not
        the ones it had.
        """
        wanted = None if knobs is None else list(knobs)
        if wanted is not None and all((info.name, knob) in self.knobs for knob in wanted):
            return
        current = self.stack.call(info, "GET", "/control").get("knobs", {})
        for knob, description in current.items():
            if (wanted is None or knob in wanted) and (info.name, knob) not in self.knobs:
                self.knobs[(info.name, knob)] = description["value"]

    def restore(self) -> list[str]:
        """Bring instances back to their first state, remove added ones, set knobs back; return what failed."""
        problems = []
        orchestrator = self.stack.orchestrator
        now = {info.name: info.state for info in self.stack.instances()}
        for name, state in now.items():
            before = self.states.get(name)
            try:
                if before is None and catalog.service_of(name) in catalog.scalable():
                    orchestrator.remove(name)
                elif before == "running" and state == "paused":
                    orchestrator.resume(name)
                elif before == "running" and state == "stopped":
                    orchestrator.start(name)
            except OrchestratorError as exc:
                problems.append(f"could not restore {name}: {exc}")
        for name, before in self.states.items():
            if name not in now and before == "running":
                problems.append(
                    f"{name} was removed and cannot come back under its name; `scalelab add` makes a new one"
                )
        instances = {info.name: info for info in self.stack.instances()}
        by_instance: dict[str, dict[str, Any]] = {}
        for (name, knob), value in self.knobs.items():
            by_instance.setdefault(name, {})[knob] = value
        for name, knobs in by_instance.items():
            info = instances.get(name)
            if info is None or info.state != "running":
                continue
            try:
                current = self.stack.call(info, "GET", "/control").get("knobs", {})
                # Only knobs it still has (a removed backend's weight is gone) and that differ.
                changes = {k: v for k, v in knobs.items() if k in current and current[k]["value"] != v}
                if changes:
                    self.stack.call(info, "PUT", "/control", changes)
            except ServiceError as exc:
                problems.append(f"could not set {name}'s knobs back: {exc}")
        return problems


class Executor:
    """Carry out actions on the stack, recording each one and what to undo."""

    def __init__(self, stack: StackClient, undo: Undo, clock: Callable[[], float] = time.time) -> None:
        self.stack = stack
        self.undo = undo
        self._clock = clock

    def targets(self, target: str) -> list[InstanceInfo]:
        """Return the running instances an action on ``target`` (an instance or a whole service) acts on."""
        return actions.set_targets(self.stack, target)

    def run(self, action: Action, t0: float | None = None) -> Executed:
        """Carry out ``action`` now and return its record (errors are recorded, not raised)."""
        names: tuple[str, ...] = ()
        error = ""
        # An instance that does not answer has no knobs to remember; the action itself may still work.
        with contextlib.suppress(ServiceError):
            self._prepare(action)
        started = self._clock()  # after the preparation: the timestamp is the action's own
        try:
            names = self._do(action)
        except (ActionError, OrchestratorError, ServiceError) as exc:
            error = str(exc)
        return Executed(
            label=action.describe(),
            verb=action.verb,
            target=action.target,
            started=started,
            finished=self._clock(),
            instances=names,
            offset=None if t0 is None else round(started - t0, 3),
            error=error,
        )

    def _prepare(self, action: Action) -> None:
        if action.verb == "kill":
            info = next((i for i in self.stack.instances() if i.name == action.target and i.state == "running"), None)
            if info is not None:
                self.undo.remember(info)

    def _do(self, action: Action) -> tuple[str, ...]:
        typed = actions.parse(action.verb, action.target, action.knobs)
        if isinstance(typed, actions.SetKnobs):
            for info in self.targets(action.target):
                self.undo.remember(info, action.knobs)
        return actions.perform(typed, self.stack.orchestrator, self.stack).names


def run_timeline(
    executor: Executor,
    actions: Sequence[Action],
    t0: float,
    done: list[Executed],
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    """Carry out each action at ``t0 + at`` (in order; a slow one delays the next), appending to ``done``."""
    for action in actions:
        delay = t0 + (action.at or 0.0) - clock()
        if delay > 0 and stop.wait(delay):
            return
        done.append(executor.run(action, t0))


def wait_settled(stack: StackClient, timeout: float = SETTLE_TIMEOUT_SECONDS) -> str:
    """Wait until every balancing pool sees each balanced instance as its process is (up or down).

    Return "" once they agree, or a sentence naming the ones that did not within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    disagreeing: list[str] = []
    while True:
        instances = stack.instances()
        states = {info.name: info.state for info in instances}
        disagreeing = []
        for pool in stack.pools(instances).values():
            for backend in pool.get("backends", []):
                expected = states.get(backend["name"]) == "running"
                if backend["healthy"] != expected:
                    disagreeing.append(backend["name"])
        if not disagreeing or time.monotonic() >= deadline:
            break
        time.sleep(SETTLE_POLL_SECONDS)
    if not disagreeing:
        return ""
    names = ", ".join(sorted(set(disagreeing)))
    return f"the pools still disagreed with the processes after {timeout:g} s about {names}"
