"""The worker's durable task queue and the bounded runner that drains it."""

from __future__ import annotations

import threading

import pytest

from services.worker.queue import STATUSES, TaskQueue
from services.worker.runner import TaskRunner

from ..support import wait_for


@pytest.fixture
def path(tmp_path):
    return tmp_path / "tasks.sqlite3"


@pytest.fixture
def queue(path):
    return TaskQueue(path)


# ------------------------------------------------------------------ the queue


def test_submit_persists_before_returning(queue, path):
    task_id = queue.submit({"duration": 1, "n": [1, 2]})
    # another connection to the same file (another process, after a crash) sees it at once
    task = TaskQueue(path).get(task_id)
    assert task["task_id"] == task_id
    assert task["status"] == "queued"
    assert task["payload"] == {"duration": 1, "n": [1, 2]}
    assert task["attempts"] == 0
    assert task["started_at"] is None
    assert "result" not in task and "error" not in task


def test_ids_are_unique(queue):
    assert len({queue.submit(None) for _ in range(50)}) == 50


def test_claim_is_fifo(queue):
    ids = [queue.submit({"n": n}) for n in range(5)]
    claimed = [queue.claim() for _ in range(5)]
    assert claimed == [(task_id, {"n": n}) for n, task_id in enumerate(ids)]
    assert queue.claim() is None


def test_claim_marks_the_task_processing(queue):
    task_id = queue.submit("payload")
    queue.claim()
    task = queue.get(task_id)
    assert task["status"] == "processing"
    assert task["attempts"] == 1
    assert task["started_at"] is not None
    assert queue.depth() == 0


def test_concurrent_claims_never_hand_out_a_task_twice(path):
    producer = TaskQueue(path)
    ids = {producer.submit({"n": n}) for n in range(60)}
    queues = [TaskQueue(path) for _ in range(2)]  # two connections, as two processes would have
    claimed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(queue: TaskQueue) -> None:
        start.wait(5)
        while (item := queue.claim()) is not None:
            with lock:
                claimed.append(item[0])

    threads = [threading.Thread(target=claimer, args=(queues[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(claimed) == 60
    assert set(claimed) == ids


def test_finish_completed_and_failed(queue):
    done = queue.submit({"x": 1})
    failed = queue.submit({"x": 2})
    queue.claim()
    queue.claim()
    queue.finish(done, result={"echo": 1})
    queue.finish(failed, error="boom")

    task = queue.get(done)
    assert task["status"] == "completed"
    assert task["result"] == {"echo": 1}
    assert "error" not in task
    assert task["finished_at"] >= task["started_at"] >= task["created_at"]

    task = queue.get(failed)
    assert task["status"] == "failed"
    assert task["error"] == "boom"
    assert "result" not in task


def test_unknown_id(queue):
    assert queue.get("nope") is None


def test_counts_and_depth(queue):
    assert queue.counts() == dict.fromkeys(STATUSES, 0)
    ids = [queue.submit(n) for n in range(4)]
    queue.claim()
    queue.claim()
    queue.finish(ids[0], result=None)
    assert queue.counts() == {"queued": 2, "processing": 1, "completed": 1, "failed": 0}
    assert queue.depth() == 2


def test_recover_requeues_tasks_that_were_running_when_the_worker_died(path):
    crashed = TaskQueue(path)
    first = crashed.submit("first")
    second = crashed.submit("second")
    crashed.claim()  # the worker took "first" and then died

    restarted = TaskQueue(path)
    assert restarted.get(first)["status"] == "processing"
    assert restarted.recover() == 1
    assert restarted.get(first)["status"] == "queued"
    assert restarted.recover() == 0
    # the interrupted task runs again first, and its attempts show it
    assert restarted.claim() == (first, "first")
    assert restarted.get(first)["attempts"] == 2
    assert restarted.claim() == (second, "second")


# ------------------------------------------------------------------ the runner


@pytest.fixture
def runners():
    started: list[TaskRunner] = []
    yield started
    for runner in started:
        runner.stop()


def start_runner(runners, queue, execute, concurrency, registry) -> TaskRunner:
    runner = TaskRunner(queue, execute, concurrency, registry)
    runners.append(runner)
    runner.start()
    return runner


def status_of(queue, task_id, *statuses):
    task = queue.get(task_id)
    return task if task["status"] in statuses else None


def test_runner_runs_tasks_concurrently(queue, runners, registry):
    both_running = threading.Barrier(2, timeout=5)

    def execute(payload):
        both_running.wait()  # only returns when two tasks run at the same time
        return {"echo": payload}

    runner = start_runner(runners, queue, execute, 2, registry)
    ids = [runner.submit({"n": n}) for n in range(2)]
    for n, task_id in enumerate(ids):
        task = wait_for(lambda t=task_id: status_of(queue, t, "completed", "failed"), what="the task to finish")
        assert task["status"] == "completed"
        assert task["result"] == {"echo": {"n": n}}
    assert registry.get_sample_value("scalelab_tasks_total", {"status": "completed"}) == 2
    assert registry.get_sample_value("scalelab_tasks_submitted_total") == 2
    assert registry.get_sample_value("scalelab_worker_concurrency") == 2


def test_runner_never_runs_more_than_its_concurrency(queue, runners, registry):
    lock = threading.Lock()
    running = 0
    peak = 0
    release = threading.Event()

    def execute(payload):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1

    runner = start_runner(runners, queue, execute, 2, registry)
    ids = [runner.submit(n) for n in range(6)]
    wait_for(lambda: registry.get_sample_value("scalelab_tasks_in_progress") == 2, what="two tasks to start")
    assert queue.counts()["processing"] == 2
    assert registry.get_sample_value("scalelab_tasks_queue_depth") == 4
    release.set()
    wait_for(lambda: queue.counts()["completed"] == 6, what="every task to finish")
    assert peak == 2
    assert all(queue.get(task_id)["status"] == "completed" for task_id in ids)


def test_failed_task_is_recorded_as_failed(queue, runners, registry):
    def execute(payload):
        raise RuntimeError("disk full")

    runner = start_runner(runners, queue, execute, 1, registry)
    task_id = runner.submit({})
    task = wait_for(lambda: status_of(queue, task_id, "completed", "failed"), what="the task to finish")
    assert task["status"] == "failed"
    assert task["error"] == "disk full"
    assert registry.get_sample_value("scalelab_tasks_total", {"status": "failed"}) == 1


def test_runner_start_requeues_and_finishes_interrupted_tasks(path, runners, registry):
    crashed = TaskQueue(path)
    task_id = crashed.submit("interrupted")
    crashed.claim()

    queue = TaskQueue(path)
    runner = TaskRunner(queue, lambda payload: payload.upper(), 1, registry)
    runners.append(runner)
    assert runner.start() == 1
    task = wait_for(lambda: status_of(queue, task_id, "completed"), what="the requeued task to finish")
    assert task["result"] == "INTERRUPTED"
    assert task["attempts"] == 2


def test_runner_needs_a_positive_concurrency(queue, registry):
    with pytest.raises(ValueError, match="at least 1"):
        TaskRunner(queue, lambda payload: None, 0, registry)
