"""A bounded pool of threads that take tasks from the queue and run them (never a thread per task)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .queue import TaskQueue

__all__ = ["TaskRunner"]

log = logging.getLogger(__name__)
# How long an idle runner waits before looking at the queue again without a wake-up.
IDLE_POLL_SECONDS = 0.5
TASK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class TaskRunner:
    """``concurrency`` threads, each claiming the oldest queued task and running ``execute`` on it."""

    def __init__(
        self,
        queue: TaskQueue,
        execute: Callable[[Any], Any],
        concurrency: int,
        registry: CollectorRegistry,
    ) -> None:
        if concurrency < 1:
            raise ValueError("the worker needs a concurrency of at least 1")
        self.queue = queue
        self._execute = execute
        self.concurrency = concurrency
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._busy = 0
        self.finished = Counter("scalelab_tasks", "Tasks finished, by final status.", ["status"], registry=registry)
        self.submitted = Counter("scalelab_tasks_submitted", "Tasks accepted into the queue.", registry=registry)
        self.duration = Histogram(
            "scalelab_task_duration_seconds", "Time a task took to run.", buckets=TASK_BUCKETS, registry=registry
        )
        Gauge("scalelab_tasks_queue_depth", "Tasks waiting to run.", registry=registry).set_function(queue.depth)
        Gauge("scalelab_tasks_in_progress", "Tasks running now.", registry=registry).set_function(lambda: self._busy)
        Gauge("scalelab_worker_concurrency", "Size of the worker's task pool.", registry=registry).set(concurrency)

    def start(self) -> int:
        """Requeue tasks a previous run left unfinished, start the threads, return how many were requeued."""
        requeued = self.queue.recover()
        if requeued:
            log.warning("requeued %d task(s) that were running when the worker last stopped", requeued)
        for index in range(self.concurrency):
            threading.Thread(target=self._loop, name=f"task-runner-{index}", daemon=True).start()
        return requeued

    def submit(self, payload: Any) -> str:
        """Store a task durably, wake one runner, and return the task id."""
        task_id = self.queue.submit(payload)
        self.submitted.inc()
        with self._wake:
            self._wake.notify()
        return task_id

    def stop(self) -> None:
        """Stop taking new tasks (running ones finish)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            claimed = self.queue.claim()
            if claimed is None:
                with self._wake:
                    self._wake.wait(IDLE_POLL_SECONDS)
                continue
            self._run(*claimed)

    def _run(self, task_id: str, payload: Any) -> None:
        with self._wake:
            self._busy += 1
        started = time.perf_counter()
        try:
            result = self._execute(payload)
        except Exception as exc:
            self.queue.finish(task_id, error=str(exc) or type(exc).__name__)
            self.finished.labels("failed").inc()
        else:
            self.queue.finish(task_id, result=result)
            self.finished.labels("completed").inc()
        finally:
            with self._wake:
                self._busy -= 1
            self.duration.observe(time.perf_counter() - started)
