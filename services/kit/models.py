"""API models more than one service answers with: a pool's status and membership, and tasks.

The balancer and every gateway answer the pool routes; the worker answers the task routes and
the gateways pass them on (``/longtask``, ``/task/<id>``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from .openapi import ErrorBody, Open
from .tier import BACKEND_NAME, MAX_WEIGHT

__all__ = [
    "Added",
    "BackendView",
    "NewBackend",
    "PoolStatus",
    "QueueFull",
    "Queued",
    "Removed",
    "Task",
    "TaskNotFound",
    "TaskPayload",
]


# ---------------------------------------------------------------- a pool's routes


class BackendView(Open):
    """One backend of a pool: its health and load."""

    name: str
    url: str
    state: Literal["healthy", "down"]
    healthy: bool
    weight: int
    in_flight: int
    requests_served: int
    breaker: Literal["closed", "half_open", "open"] = Field(
        "closed", description="Its circuit breaker: open, the pool sends it nothing until a trial succeeds."
    )


class PoolStatus(Open):
    """A pool: its algorithm, health-check policy and every backend's state."""

    pool: str
    algorithm: str
    healthy: int
    backends: list[BackendView]


class NewBackend(BaseModel):
    """A backend to add to a pool."""

    model_config = ConfigDict(strict=True)

    name: str = Field(pattern=f"^{BACKEND_NAME.pattern}$", description="Its name in the pool, e.g. microservice-4.")
    url: str = Field(max_length=2048, description="Its base URL: http://host:port.")
    weight: int = Field(1, ge=0, le=MAX_WEIGHT, description="Its weight for weighted_round_robin.")


class Added(BaseModel):
    """The backend added."""

    added: str
    url: str


class Removed(BaseModel):
    """The backend removed (after its requests in flight were done)."""

    removed: str


# ---------------------------------------------------------------- tasks


class TaskPayload(RootModel[Any]):
    """Any JSON. An object may carry ``duration`` (seconds, 0 to WORKER_MAX_TASK_SECONDS) and ``fail`` (true)."""


class Queued(Open):
    """The task was stored and will run."""

    status: Literal["queued"]
    task_id: str


class Task(Open):
    """A task and where it is: its result once completed, its error once failed."""

    task_id: str
    status: Literal["queued", "processing", "completed", "failed"]
    payload: Any
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None


class TaskNotFound(Open):
    """No task has that id (it may have expired after the retention period)."""

    status: Literal["not_found"]
    task_id: str
    error: str


class QueueFull(ErrorBody):
    """The queue is full; come back after Retry-After."""

    max_queued: int
