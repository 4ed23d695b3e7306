"""The async worker: accepts tasks, keeps them on disk, and runs them on a bounded thread pool.

Both ends of the queue are bounded: a submit while ``WORKER_MAX_QUEUED`` tasks wait answers 429
with ``Retry-After``, and finished tasks are deleted after ``WORKER_TASK_RETENTION_SECONDS``. When
the task store fails (e.g. the SQLite file is locked), requests get a 503 with ``Retry-After``
and /health says ``degraded``, still with HTTP 200: the worker keeps serving what it can.
"""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from prometheus_client import CollectorRegistry

from ..kit import ApiError, ConfigError, Knob, Knobs, create_service_app, error_body, load_config
from ..kit.openapi import responses, validated
from .api import SUBMIT, TASK, TaskSummary, api
from .config import WorkerConfig
from .queue import QueueFull, TaskQueue
from .runner import STORAGE_ERRORS, TaskRunner

bp = Blueprint("worker", __name__)
# What a client told to come back should wait: a full queue frees a slot each time a task
# starts; a failing store is retried by the runners within about a second.
QUEUE_FULL_RETRY_AFTER_SECONDS = 2
STORAGE_RETRY_AFTER_SECONDS = 1


class LabTask:
    """What a lab task does: wait its duration (the simulated work), then echo its payload."""

    def __init__(self, config: WorkerConfig, knobs: Knobs, rng: random.Random | None = None) -> None:
        self._config = config
        self._knobs = knobs
        self._rng = rng or random.Random()

    def duration(self, payload: Any) -> float:
        """Return how long the task for ``payload`` runs: its ``duration`` field or the knob."""
        if isinstance(payload, dict) and "duration" in payload:
            return float(payload["duration"])
        return float(self._knobs["task_seconds"])

    def validate(self, payload: Any) -> None:
        """Raise a 400 ApiError for a payload the worker cannot run."""
        if isinstance(payload, dict) and "duration" in payload:
            value = payload["duration"]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= self._config.max_task_seconds
            ):
                raise ApiError(400, f"duration must be a number of seconds from 0 to {self._config.max_task_seconds}")

    def __call__(self, payload: Any) -> dict[str, Any]:
        seconds = self.duration(payload)
        time.sleep(seconds)
        if (isinstance(payload, dict) and payload.get("fail") is True) or self._rng.random() < self._knobs[
            "error_rate"
        ]:
            raise RuntimeError("task failed (asked for by the payload or the error_rate knob)")
        return {"echo": payload, "duration_seconds": seconds, "worker": self._config.instance}


def _runner() -> TaskRunner:
    return current_app.extensions["task_runner"]


@bp.post("/task")
@api.validate(**SUBMIT)
def submit():
    payload = validated("json").root
    current_app.extensions["lab_task"].validate(payload)
    try:
        task_id = _runner().submit(payload)
    except QueueFull as exc:
        raise ApiError(
            429,
            f"{exc} (WORKER_MAX_QUEUED); retry after {QUEUE_FULL_RETRY_AFTER_SECONDS} s",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_AFTER_SECONDS)},
            max_queued=exc.limit,
        ) from None
    return jsonify({"status": "queued", "task_id": task_id}), 202


@bp.get("/task/<task_id>")
@api.validate(**TASK)
def status(task_id: str):
    task = _runner().queue.get(task_id)
    if task is None:
        return jsonify({"status": "not_found", "task_id": task_id, "error": f"no task with id {task_id!r}"}), 404
    return jsonify(task)


@bp.get("/tasks")
@api.validate(resp=responses((503,), HTTP_200=TaskSummary), tags=["tasks"])
def summary():
    return jsonify({"counts": _runner().queue.counts(), "concurrency": _runner().concurrency})


def create_app(
    overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None, queue: TaskQueue | None = None
) -> Flask:
    """Build the worker from the environment (``overrides`` win, for tests) and start its task pool.

    :param queue: the task store (default: a :class:`TaskQueue` on ``WORKER_QUEUE_PATH``); tests pass one that fails.
    """
    config = load_config(WorkerConfig, overrides)
    registry = registry or CollectorRegistry()
    knobs = Knobs(
        [
            Knob(
                "task_seconds",
                float(config.task_seconds),
                "Duration of a task whose payload names none (s).",
                0,
                config.max_task_seconds,
            ),
            Knob("error_rate", 0.0, "Share of tasks that fail.", 0, 1),
        ],
        registry,
    )
    if config.max_queued < 1 or config.task_retention_seconds <= 0:
        raise ConfigError(
            "WORKER_MAX_QUEUED must be at least 1 and WORKER_TASK_RETENTION_SECONDS above 0, "
            f"not {config.max_queued} and {config.task_retention_seconds}"
        )
    lab_task = LabTask(config, knobs)
    runner = TaskRunner(
        queue or TaskQueue(config.path, config.max_queued),
        lab_task,
        config.concurrency,
        registry,
        retention_seconds=config.task_retention_seconds,
    )
    app = create_service_app("worker", config, knobs, registry, api, health=runner.health)
    app.extensions.update(task_runner=runner, lab_task=lab_task)
    app.register_blueprint(bp)

    def storage_failed(exc: Exception):  # type: ignore[no-untyped-def]
        runner.record_storage_error("answer a request", exc)
        body = error_body(503, f"the task store failed ({type(exc).__name__}: {exc}); retry shortly")
        return jsonify(body), 503, {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)}

    for error in STORAGE_ERRORS:
        app.register_error_handler(error, storage_failed)
    runner.start()
    return app
