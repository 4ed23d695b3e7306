"""The worker keeps what it accepted through its own crash."""

from __future__ import annotations

import requests

from .conftest import REQUEST_TIMEOUT, Stack, wait_for

T = REQUEST_TIMEOUT


def test_tasks_survive_a_worker_crash(healthy_stack: Stack) -> None:
    worker = healthy_stack.url("worker")
    ids = [
        requests.post(worker + "/task", json={"duration": 1.5, "n": n}, timeout=T).json()["task_id"] for n in range(6)
    ]
    wait_for(lambda: requests.get(f"{worker}/task/{ids[0]}", timeout=T).json()["status"] == "processing")
    healthy_stack.orchestrator.kill("worker")
    healthy_stack.orchestrator.start("worker")

    def all_completed() -> list[dict] | None:
        tasks = [requests.get(f"{worker}/task/{task_id}", timeout=T).json() for task_id in ids]
        return tasks if all(task["status"] == "completed" for task in tasks) else None

    tasks = wait_for(all_completed, timeout=30)
    assert [task["result"]["echo"]["n"] for task in tasks] == list(range(6))
    assert tasks[0]["attempts"] == 2, "the task that was running when the worker died should have run again"
    depth = requests.get(worker + "/metrics", timeout=T).text
    assert "scalelab_tasks_queue_depth 0.0" in depth
