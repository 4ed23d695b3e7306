"""What the worker's HTTP API takes and gives: the models behind its /openapi.json."""

from __future__ import annotations

from pydantic import BaseModel

from ..kit.models import Queued, QueueFull, Task, TaskNotFound, TaskPayload
from ..kit.openapi import responses, service_api

__all__ = ["SUBMIT", "TASK", "TaskSummary", "api"]

api = service_api(
    "worker",
    "Accepts tasks (202 at once), keeps them on disk and runs them on a bounded pool of threads. A task's "
    "payload is any JSON; an object may name its duration in seconds and ask to fail.",
)


class TaskSummary(BaseModel):
    """How many tasks are in each status, and the size of the pool."""

    counts: dict[str, int]
    concurrency: int


SUBMIT = {
    "json": TaskPayload,
    "resp": responses((400, 413, 503), HTTP_202=Queued, HTTP_429=QueueFull),
    "tags": ["tasks"],
}
TASK = {"resp": responses((503,), HTTP_200=Task, HTTP_404=TaskNotFound), "tags": ["tasks"]}
api.link("POST /task", 202, "GET /task/{task_id}", task_id="$response.body#/task_id")
