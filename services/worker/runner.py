"""A bounded pool of threads that take tasks from the queue and run them (never a thread per task).

A runner thread never dies of a storage error ("database is locked", a full disk): it counts
the error, waits with exponential backoff and jitter, and tries again, so the pool stays at its
configured size. A task that raises anything, ``SystemExit`` included, fails that task only; and a
supervisor thread replaces any runner thread that dies all the same (counted, and logged with
the reason). :meth:`TaskRunner.health` says ``degraded`` while fewer threads than configured are
alive, or a storage error or a restart happened in the last :data:`STORAGE_ERROR_WINDOW_SECONDS`.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .queue import TaskQueue

__all__ = [
    "STORAGE_BACKOFF_MAX_SECONDS",
    "STORAGE_BACKOFF_SECONDS",
    "STORAGE_ERRORS",
    "STORAGE_ERROR_WINDOW_SECONDS",
    "TaskRunner",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long an idle runner waits before looking at the queue again without a wake-up.
IDLE_POLL_SECONDS = 0.5
TASK_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# What a failing task store raises: SQLite's own errors, and the OS's (a full or vanished disk).
STORAGE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, OSError)
# The first wait after a storage error; each further error in a row doubles it, up to the cap.
# Jitter spreads the threads' retries so they do not all hit a locked file at the same instant.
STORAGE_BACKOFF_SECONDS = 0.05
STORAGE_BACKOFF_MAX_SECONDS = 5.0
# /health reports degraded for this long after the last storage error.
STORAGE_ERROR_WINDOW_SECONDS = 30.0
# How often the supervisor looks for dead runner threads: a lost thread is back well within a second.
SUPERVISE_INTERVAL_SECONDS = 0.25
# How often finished tasks older than the retention are deleted (more often when the retention is shorter).
PURGE_INTERVAL_SECONDS = 60.0


class TaskRunner:
    """``concurrency`` threads, each claiming the oldest queued task and running ``execute`` on it."""

    def __init__(
        self,
        queue: TaskQueue,
        execute: Callable[[Any], Any],
        concurrency: int,
        registry: CollectorRegistry,
        retention_seconds: float | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1:
            raise ValueError("the worker needs a concurrency of at least 1")
        if retention_seconds is not None and retention_seconds <= 0:
            raise ValueError("the retention of finished tasks must be positive")
        self.queue = queue
        self._execute = execute
        self.concurrency = concurrency
        self.retention_seconds = retention_seconds
        self._rng = rng or random.Random()
        self._clock = clock
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._last_storage_error: tuple[float, str] | None = None
        self._last_restart: tuple[float, str] | None = None
        self._restart_count = 0
        self._depth = 0  # the last depth read, shown while the store cannot answer
        self.finished = Counter("scalelab_tasks", "Tasks finished, by final status.", ["status"], registry=registry)
        self.submitted = Counter("scalelab_tasks_submitted", "Tasks accepted into the queue.", registry=registry)
        self.purged = Counter(
            "scalelab_tasks_purged", "Finished tasks deleted after the retention period.", registry=registry
        )
        self.storage_errors = Counter(
            "scalelab_worker_storage_errors",
            "Errors from the task store (e.g. database is locked), each retried after a backoff.",
            registry=registry,
        )
        self.restarts = Counter(
            "scalelab_worker_thread_restarts",
            "Runner threads that died and were replaced by the supervisor.",
            registry=registry,
        )
        self.duration = Histogram(
            "scalelab_task_duration_seconds", "Time a task took to run.", buckets=TASK_BUCKETS, registry=registry
        )
        Gauge("scalelab_tasks_queue_depth", "Tasks waiting to run.", registry=registry).set_function(self.depth)
        Gauge("scalelab_tasks_in_progress", "Tasks running now.", registry=registry).set_function(lambda: self._busy)
        Gauge("scalelab_worker_concurrency", "Size of the worker's task pool.", registry=registry).set(concurrency)
        Gauge(
            "scalelab_worker_threads_alive", "Runner threads alive (the pool's size when healthy).", registry=registry
        ).set_function(self.threads_alive)

    def start(self) -> int:
        """Requeue tasks a previous run left unfinished, start the threads, return how many were requeued."""
        requeued = self._with_retries("requeue interrupted tasks", self.queue.recover)
        if requeued:
            log.warning("requeued %d task(s) that were running when the worker last stopped", requeued)
        self._threads = [self._spawn(self._guarded_loop, f"task-runner-{index}") for index in range(self.concurrency)]
        self._spawn(self._supervise_loop, "task-supervisor")
        if self.retention_seconds is not None:
            self._spawn(self._purge_loop, "task-purger")
        return requeued

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def supervise(self) -> int:
        """Replace every runner thread that has died; return how many were replaced."""
        replaced = 0
        for index, thread in enumerate(self._threads):
            if thread.is_alive() or self._stop.is_set():
                continue
            log.error("runner thread %s died; starting a new one", thread.name)
            self._threads[index] = self._spawn(self._guarded_loop, thread.name)
            # Counted once the new thread runs: a reader who sees the restart sees the pool full again.
            self.restarts.inc()
            self._restart_count += 1
            self._last_restart = (self._clock(), thread.name)
            replaced += 1
        return replaced

    def _supervise_loop(self) -> None:
        while not self._stop.wait(SUPERVISE_INTERVAL_SECONDS):
            self.supervise()

    def submit(self, payload: Any) -> str:
        """Store a task durably, wake one runner, and return the task id (QueueFull when the queue is full)."""
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

    # ---------------------------------------------------------------- health
    def threads_alive(self) -> int:
        """Return how many of the pool's runner threads are alive."""
        return sum(thread.is_alive() for thread in self._threads)

    def depth(self) -> int:
        """Return how many tasks wait to run (the last known number while the store fails)."""
        try:
            self._depth = self.queue.depth()
        except STORAGE_ERRORS as exc:
            self.record_storage_error("read the queue depth", exc)
        return self._depth

    def record_storage_error(self, doing: str, error: Exception) -> None:
        """Count a storage error and remember it for :meth:`health`."""
        self.storage_errors.inc()
        message = f"{type(error).__name__}: {error}"
        self._last_storage_error = (self._clock(), f"could not {doing}: {message}")
        log.warning("task store error: could not %s (%s)", doing, message)

    def health(self) -> dict[str, Any]:
        """Return the worker's fields for /health; ``status`` is ``degraded`` with ``reasons`` when it is."""
        depth = self.depth()  # first: a store failing now shows among the reasons
        reasons = []
        alive = self.threads_alive()
        if self._threads and alive < self.concurrency and not self._stop.is_set():
            reasons.append(f"{alive} of {self.concurrency} runner threads alive")
        last = self._last_storage_error
        if last is not None and self._clock() - last[0] < STORAGE_ERROR_WINDOW_SECONDS:
            ago = self._clock() - last[0]
            reasons.append(f"task store error {ago:.1f} s ago ({last[1]})")
        restart = self._last_restart
        if restart is not None and self._clock() - restart[0] < STORAGE_ERROR_WINDOW_SECONDS:
            reasons.append(f"runner thread {restart[1]} died {self._clock() - restart[0]:.1f} s ago and was replaced")
        body: dict[str, Any] = {
            "queue_depth": depth,
            "threads_alive": alive,
            "concurrency": self.concurrency,
            "thread_restarts": self._restart_count,
        }
        if reasons:
            body.update(status="degraded", reasons=reasons)
        return body

    # ---------------------------------------------------------------- the threads
    def backoff(self, failures: int) -> float:
        """Return the wait after ``failures`` storage errors in a row: doubling, capped, with jitter."""
        ceiling = min(STORAGE_BACKOFF_MAX_SECONDS, STORAGE_BACKOFF_SECONDS * 2 ** min(failures - 1, 30))
        return ceiling * self._rng.uniform(0.5, 1.0)

    def _with_retries(self, doing: str, operation: Callable[[], T]) -> T:
        """Run ``operation`` until it does not raise a storage error (or the runner stops: then raise)."""
        failures = 0
        while True:
            try:
                return operation()
            except STORAGE_ERRORS as exc:
                failures += 1
                self.record_storage_error(doing, exc)
                if self._stop.wait(self.backoff(failures)):
                    raise

    def _guarded_loop(self) -> None:
        try:
            self._loop()
        except BaseException:
            # Python's thread hook says nothing about a SystemExit: say it here, whatever ended the
            # thread; the thread then ends and the supervisor starts another.
            log.exception("runner thread %s stopped by an error", threading.current_thread().name)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                claimed = self.queue.claim()
            except STORAGE_ERRORS as exc:
                failures += 1
                self.record_storage_error("claim a task", exc)
                self._stop.wait(self.backoff(failures))
                continue
            except Exception:  # a bug must not shrink the pool either; the log shows it
                failures += 1
                log.exception("unexpected error claiming a task; retrying after a backoff")
                self._stop.wait(self.backoff(failures))
                continue
            failures = 0
            if claimed is None:
                with self._wake:
                    self._wake.wait(IDLE_POLL_SECONDS)
                continue
            try:
                self._run(*claimed)
            except Exception:  # as above: log it, keep the thread
                log.exception("unexpected error running task %s", claimed[0])

    def _run(self, task_id: str, payload: Any) -> None:
        with self._wake:
            self._busy += 1
        started = time.perf_counter()
        try:
            try:
                result = self._execute(payload)
            except Exception as exc:
                outcome: dict[str, Any] = {"error": str(exc) or type(exc).__name__}
                status = "failed"
            except SystemExit as exc:  # a task calling exit() ends itself, not the runner thread
                outcome = {"error": f"the task called exit({exc.code!r})"}
                status = "failed"
            else:
                outcome = {"result": result}
                status = "completed"
            # The task ran: its outcome must reach the store, however long the store takes to come back.
            try:
                self._record(task_id, outcome)
            except STORAGE_ERRORS:
                log.warning("stopped before task %s could be recorded; it runs again after a restart", task_id)
                return
            except (TypeError, ValueError) as exc:  # a result JSON cannot hold
                status = "failed"
                self._record(task_id, {"error": f"the task's result cannot be stored as JSON ({exc})"})
            self.finished.labels(status).inc()
        finally:
            with self._wake:
                self._busy -= 1
            self.duration.observe(time.perf_counter() - started)

    def _record(self, task_id: str, outcome: dict[str, Any]) -> None:
        self._with_retries("record a finished task", lambda: self.queue.finish(task_id, **outcome))

    def _purge_loop(self) -> None:
        assert self.retention_seconds is not None
        interval = min(PURGE_INTERVAL_SECONDS, self.retention_seconds)
        while not self._stop.wait(interval):
            self.purge()

    def purge(self) -> int:
        """Delete finished tasks older than the retention now; return how many (0 on a storage error)."""
        if self.retention_seconds is None:
            return 0
        try:
            purged = self.queue.purge(self.retention_seconds)
        except STORAGE_ERRORS as exc:
            self.record_storage_error("delete expired tasks", exc)
            return 0
        self.purged.inc(purged)
        return purged
