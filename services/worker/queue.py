"""The worker's durable task queue in SQLite: a task is on disk before the worker says 202.

The queue is bounded twice: at most ``max_queued`` tasks wait (a submit beyond that raises
:class:`QueueFull`), and :meth:`TaskQueue.purge` removes finished tasks older than the retention.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..kit.sqlite import open_database

__all__ = ["DEFAULT_MAX_QUEUED", "STATUSES", "QueueFull", "TaskQueue"]

STATUSES = ("queued", "processing", "completed", "failed")
DEFAULT_MAX_QUEUED = 10_000


class QueueFull(RuntimeError):
    """As many tasks as the queue takes are waiting already."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the task queue is full ({limit} tasks waiting)")
        self.limit = limit


class TaskQueue:
    """Tasks with their status, payload and result; claims are atomic so no task runs twice at once."""

    def __init__(
        self, path: str | Path, max_queued: int = DEFAULT_MAX_QUEUED, clock: Callable[[], float] = time.time
    ) -> None:
        if max_queued < 1:
            raise ValueError("the queue must take at least 1 task")
        self.path = str(path)
        self.max_queued = max_queued
        self._clock = clock
        self._conn = open_database(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute(
                """CREATE TABLE IF NOT EXISTS tasks (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT UNIQUE NOT NULL,
                    status TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    result TEXT,
                    error TEXT,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    created_at REAL NOT NULL,
                    started_at REAL,
                    finished_at REAL)"""
            )
            self._conn.execute("CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, seq)")
            self._conn.execute("CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at)")

    def submit(self, payload: Any) -> str:
        """Store a new queued task and return its id; raise QueueFull when ``max_queued`` tasks wait already."""
        task_id = uuid.uuid4().hex
        with self._lock:
            # One statement checks and inserts: another connection to the file cannot slip in between.
            inserted = self._conn.execute(
                """INSERT INTO tasks (id, status, payload, created_at) SELECT ?, 'queued', ?, ?
                   WHERE (SELECT COUNT(*) FROM tasks WHERE status = 'queued') < ?""",
                (task_id, json.dumps(payload), self._clock(), self.max_queued),
            ).rowcount
        if not inserted:
            raise QueueFull(self.max_queued)
        return task_id

    def recover(self) -> int:
        """Put tasks that were running when the worker died back in the queue; return how many."""
        with self._lock:
            return self._conn.execute("UPDATE tasks SET status = 'queued' WHERE status = 'processing'").rowcount

    def claim(self) -> tuple[str, Any] | None:
        """Mark the oldest queued task as processing and return ``(id, payload)``, or None."""
        with self._lock:
            row = self._conn.execute(
                """UPDATE tasks SET status = 'processing', started_at = ?, attempts = attempts + 1
                   WHERE seq = (SELECT seq FROM tasks WHERE status = 'queued' ORDER BY seq LIMIT 1)
                   RETURNING id, payload""",
                (self._clock(),),
            ).fetchone()
        return None if row is None else (row[0], json.loads(row[1]))

    def finish(self, task_id: str, result: Any = None, error: str | None = None) -> None:
        """Record a task as completed with ``result``, or as failed with ``error``."""
        status = "failed" if error is not None else "completed"
        with self._lock:
            self._conn.execute(
                "UPDATE tasks SET status = ?, result = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, json.dumps(result), error, self._clock(), task_id),
            )

    def get(self, task_id: str) -> dict[str, Any] | None:
        """Return the task as JSON for ``GET /task/<id>``, or None when the id is unknown."""
        with self._lock:
            row = self._conn.execute(
                "SELECT id, status, payload, result, error, attempts, created_at, started_at, finished_at"
                " FROM tasks WHERE id = ?",
                (task_id,),
            ).fetchone()
        if row is None:
            return None
        task: dict[str, Any] = {
            "task_id": row[0],
            "status": row[1],
            "payload": json.loads(row[2]),
            "attempts": row[5],
            "created_at": row[6],
            "started_at": row[7],
            "finished_at": row[8],
        }
        if row[1] == "completed":
            task["result"] = json.loads(row[3])
        if row[1] == "failed":
            task["error"] = row[4]
        return task

    def counts(self) -> dict[str, int]:
        """Return how many tasks are in each status."""
        with self._lock:
            rows = self._conn.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(dict(rows))
        return counts

    def depth(self) -> int:
        """Return how many tasks wait to run."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM tasks WHERE status = 'queued'").fetchone()[0]

    def purge(self, retention_seconds: float) -> int:
        """Delete completed and failed tasks that finished more than ``retention_seconds`` ago; return how many."""
        with self._lock:
            return self._conn.execute(
                "DELETE FROM tasks WHERE finished_at < ? AND status IN ('completed', 'failed')",
                (self._clock() - retention_seconds,),
            ).rowcount
