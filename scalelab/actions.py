"""One typed dispatch of what can be done to a running stack: used by the CLI, the page and experiments.

    perform(Kill("gateway-2"), orchestrator)
    perform(SetKnobs("gateway", {"coalescing": False}), orchestrator, stack)

Instance verbs go to the orchestrator; knobs go to each instance's ``PUT /control`` through a
:class:`~scalelab.stack.StackClient` (which carries the admin token).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scalelab import catalog
from scalelab.orchestrators.base import InstanceInfo, Orchestrator, OrchestratorError
from scalelab.stack import StackClient

__all__ = [
    "INSTANCE_VERBS",
    "VERBS",
    "Action",
    "ActionError",
    "Add",
    "Done",
    "Kill",
    "Pause",
    "Remove",
    "Resume",
    "SetKnobs",
    "Start",
    "describe",
    "parse",
    "perform",
    "set_targets",
    "target_of",
]


class ActionError(OrchestratorError):
    """An action is malformed or has nothing to act on; the message says which and why."""


@dataclass(frozen=True)
class Kill:
    """Stop an instance at once, as a crash would."""

    instance: str
    verb = "kill"


@dataclass(frozen=True)
class Pause:
    """Freeze an instance: it keeps its connections and answers nothing."""

    instance: str
    verb = "pause"


@dataclass(frozen=True)
class Resume:
    """Unfreeze a paused instance."""

    instance: str
    verb = "resume"


@dataclass(frozen=True)
class Start:
    """Start a stopped instance again."""

    instance: str
    verb = "start"


@dataclass(frozen=True)
class Add:
    """Start one more instance of a service that scales and put it in rotation."""

    service: str
    verb = "add"


@dataclass(frozen=True)
class Remove:
    """Take an instance out of rotation, stop it and forget it."""

    instance: str
    verb = "remove"


@dataclass(frozen=True)
class SetKnobs:
    """Set knobs on one instance, or on every running instance of a service."""

    target: str
    knobs: dict[str, Any] = field(default_factory=dict)
    verb = "set"


Action = Kill | Pause | Resume | Start | Add | Remove | SetKnobs
INSTANCE_VERBS: dict[str, type[Kill | Pause | Resume | Start | Remove]] = {
    "kill": Kill,
    "pause": Pause,
    "resume": Resume,
    "start": Start,
    "remove": Remove,
}
VERBS = (*INSTANCE_VERBS, "add", "set")


@dataclass(frozen=True)
class Done:
    """How an action went: the instances it acted on and what they are now."""

    action: Action
    instances: tuple[InstanceInfo, ...] = ()
    names: tuple[str, ...] = ()  # the instances acted on (a removed one is gone, so only named)

    @property
    def message(self) -> str:
        """Return a line for the user: ``gateway-2 is stopped``, ``added microservice-4``, ..."""
        action = self.action
        if isinstance(action, Add):
            return f"added {self.names[0]}"
        if isinstance(action, Remove):
            return f"removed {action.instance}"
        if isinstance(action, SetKnobs):
            knobs = " ".join(f"{k}={v}" for k, v in action.knobs.items())
            return f"{knobs} on {', '.join(self.names)}"
        return ", ".join(f"{info.name} is {info.state}" for info in self.instances)


def target_of(action: Action) -> str:
    """Return what an action names: an instance, or a service for add and set."""
    if isinstance(action, Add):
        return action.service
    if isinstance(action, SetKnobs):
        return action.target
    return action.instance


def describe(action: Action) -> str:
    """Return an action as a short label: ``kill gateway-2``, ``set gateway coalescing=False``."""
    if isinstance(action, SetKnobs):
        return f"set {action.target} " + " ".join(f"{k}={v}" for k, v in action.knobs.items())
    return f"{action.verb} {target_of(action)}"


def parse(verb: str, target: str, knobs: dict[str, Any] | None = None) -> Action:
    """Return the typed action for ``verb`` on ``target``; raise ActionError for an unknown verb or bad target."""
    if verb == "add":
        if target not in catalog.scalable():
            raise ActionError(f"add takes a service that scales ({', '.join(catalog.scalable())}), not {target!r}")
        return Add(target)
    if verb == "set":
        if not knobs:
            raise ActionError(f"set {target}: name at least one knob and its value")
        return SetKnobs(target, dict(knobs))
    if verb not in INSTANCE_VERBS:
        raise ActionError(f"unknown action {verb!r}; use one of {', '.join(VERBS)}")
    return INSTANCE_VERBS[verb](target)


def set_targets(stack: StackClient, target: str) -> list[InstanceInfo]:
    """Return the instances a ``set`` on ``target`` reaches: that instance, or every running one of that service."""
    instances = stack.instances()
    named = [info for info in instances if info.name == target]
    if named:
        return named
    chosen = [info for info in instances if info.service == target and info.state == "running"]
    if not chosen:
        known = ", ".join(svc.name for svc in catalog.lab_services())
        raise ActionError(f"no running instance or service named {target!r}; services: {known}")
    return chosen


def perform(action: Action, orchestrator: Orchestrator, stack: StackClient | None = None) -> Done:
    """Carry out ``action``; raise OrchestratorError (ActionError) or ServiceError when it cannot be done."""
    match action:
        case Kill(name):
            return Done(action, (orchestrator.kill(name),), (name,))
        case Pause(name):
            return Done(action, (orchestrator.pause(name),), (name,))
        case Resume(name):
            return Done(action, (orchestrator.resume(name),), (name,))
        case Start(name):
            return Done(action, (orchestrator.start(name),), (name,))
        case Add(service):
            info = orchestrator.add(service)
            return Done(action, (info,), (info.name,))
        case Remove(name):
            orchestrator.remove(name)
            return Done(action, (), (name,))
        case SetKnobs(target, knobs):
            if stack is None:
                raise ActionError(f"set {target}: knobs need the stack's admin token; none was given")
            infos = set_targets(stack, target)
            for info in infos:
                stack.call(info, "PUT", "/control", knobs)
            return Done(action, tuple(infos), tuple(info.name for info in infos))
    raise ActionError(f"not an action: {action!r}")
