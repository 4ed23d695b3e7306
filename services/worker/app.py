"""The async worker: accepts tasks, keeps them on disk, and runs them on a bounded thread pool."""

from __future__ import annotations

import random
import time
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify
from prometheus_client import CollectorRegistry

from ..kit import ApiError, Knob, Knobs, create_service_app, json_body, load_config
from .config import WorkerConfig
from .queue import TaskQueue
from .runner import TaskRunner

bp = Blueprint("worker", __name__)


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
def submit():
    payload = json_body()
    current_app.extensions["lab_task"].validate(payload)
    task_id = _runner().submit(payload)
    return jsonify({"status": "queued", "task_id": task_id}), 202


@bp.get("/task/<task_id>")
def status(task_id: str):
    task = _runner().queue.get(task_id)
    if task is None:
        return jsonify({"status": "not_found", "task_id": task_id, "error": f"no task with id {task_id!r}"}), 404
    return jsonify(task)


@bp.get("/tasks")
def summary():
    return jsonify({"counts": _runner().queue.counts(), "concurrency": _runner().concurrency})


def create_app(overrides: dict[str, Any] | None = None, registry: CollectorRegistry | None = None) -> Flask:
    """Build the worker from the environment (``overrides`` win, for tests) and start its task pool."""
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
    lab_task = LabTask(config, knobs)
    runner = TaskRunner(TaskQueue(config.path), lab_task, config.concurrency, registry)
    app = create_service_app("worker", config, knobs, registry, health=lambda: {"queue_depth": runner.queue.depth()})
    app.extensions.update(task_runner=runner, lab_task=lab_task)
    app.register_blueprint(bp)
    runner.start()
    return app
