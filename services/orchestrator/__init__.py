"""Orchestrators: one interface to list, kill, start, pause, resume and add instances."""

from .base import InstanceInfo, Orchestrator, OrchestratorError, UnknownInstance
from .local import LocalOrchestrator
from .topology import InstanceSpec, Secrets, default_topology

__all__ = [
    "InstanceInfo",
    "InstanceSpec",
    "LocalOrchestrator",
    "Orchestrator",
    "OrchestratorError",
    "Secrets",
    "UnknownInstance",
    "default_topology",
]
