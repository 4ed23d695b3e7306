"""Worker settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import ServiceSettings, setting
from .queue import DEFAULT_MAX_QUEUED


@dataclass
class WorkerConfig(ServiceSettings):
    """Settings of the async worker."""

    port: int = setting(5005, "WORKER_PORT", "Port of the worker.")
    path: str = setting("scalelab-data/tasks.sqlite3", "WORKER_QUEUE_PATH", "SQLite file holding the task queue.")
    concurrency: int = setting(4, "WORKER_CONCURRENCY", "Tasks run at the same time (size of the thread pool).")
    task_seconds: float = setting(
        2.0, "WORKER_TASK_SECONDS", "How long a task runs when its payload names no duration."
    )
    max_task_seconds: float = setting(60.0, "WORKER_MAX_TASK_SECONDS", "Longest duration a payload may ask for.")
    task_retention_seconds: float = setting(
        3600.0,
        "WORKER_TASK_RETENTION_SECONDS",
        "How long a completed or failed task stays readable at /task/<id>; then it is deleted (within a minute).",
    )
    max_queued: int = setting(
        DEFAULT_MAX_QUEUED,
        "WORKER_MAX_QUEUED",
        "Most tasks waiting to run; POST /task beyond that answers 429 with Retry-After.",
    )
