"""The worker's durable task queue and the bounded runner that drains it."""

from __future__ import annotations

import random
import threading

import pytest

from services.worker import runner as runner_module
from services.worker.queue import STATUSES, QueueFull, TaskQueue
from services.worker.runner import (
    STORAGE_BACKOFF_MAX_SECONDS,
    STORAGE_BACKOFF_SECONDS,
    STORAGE_ERROR_WINDOW_SECONDS,
    TaskRunner,
)

from ..support import wait_for
from .flaky import FlakyQueue


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


def start_runner(runners, queue, execute, concurrency, registry, **options) -> TaskRunner:
    runner = TaskRunner(queue, execute, concurrency, registry, **options)
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


# ------------------------------------------------------------------ the bounds: queued tasks and retention


def test_submit_beyond_max_queued_raises_queue_full_and_stores_nothing(path):
    queue = TaskQueue(path, max_queued=2)
    queue.submit(1)
    queue.submit(2)
    with pytest.raises(QueueFull, match="2 tasks waiting") as info:
        queue.submit(3)
    assert info.value.limit == 2
    assert queue.depth() == 2
    queue.claim()  # a task started: a slot is free again
    queue.submit(4)
    assert queue.counts() == {"queued": 2, "processing": 1, "completed": 0, "failed": 0}


def test_the_bound_holds_across_connections(path):
    TaskQueue(path, max_queued=1).submit("first")
    with pytest.raises(QueueFull):
        TaskQueue(path, max_queued=1).submit("second")


def test_purge_deletes_finished_tasks_past_the_retention_only(path, clock):
    queue = TaskQueue(path, clock=clock)
    done, failed, running, waiting = (queue.submit(n) for n in range(4))
    for _ in range(3):
        queue.claim()
    queue.finish(done, result=1)
    queue.finish(failed, error="boom")
    clock.advance(59)
    assert queue.purge(60) == 0
    clock.advance(1.5)
    assert queue.purge(60) == 2
    assert queue.get(done) is None and queue.get(failed) is None
    assert queue.get(running)["status"] == "processing"
    assert queue.get(waiting)["status"] == "queued"
    clock.advance(10_000)
    assert queue.purge(60) == 0  # unfinished tasks never expire


# ------------------------------------------------------------------ storage errors in the runner


def test_backoff_doubles_up_to_its_cap_with_jitter(queue, registry):
    runner = TaskRunner(queue, lambda payload: None, 1, registry, rng=random.Random(1))
    for failures in range(1, 40):
        ceiling = min(STORAGE_BACKOFF_MAX_SECONDS, STORAGE_BACKOFF_SECONDS * 2 ** (failures - 1))
        assert ceiling / 2 <= runner.backoff(failures) <= ceiling
    waits = {round(runner.backoff(3), 6) for _ in range(20)}
    assert len(waits) > 10  # jittered, so the threads do not retry in step


def test_runner_threads_survive_storage_errors_and_the_pool_stays_full(queue, runners, registry):
    flaky = FlakyQueue(queue, claim=6, finish=2)
    runner = start_runner(runners, flaky, lambda payload: {"echo": payload}, 3, registry)
    ids = [runner.submit({"n": n}) for n in range(6)]
    for task_id in ids:
        task = wait_for(lambda t=task_id: status_of(queue, t, "completed", "failed"), what="the task to finish")
        assert task["status"] == "completed"
        assert task["attempts"] == 1  # a failed finish is retried, the task is not run again
    wait_for(flaky.pending(), what="every planned failure")
    assert runner.threads_alive() == 3
    assert registry.get_sample_value("scalelab_worker_storage_errors_total") == 8
    assert registry.get_sample_value("scalelab_worker_threads_alive") == 3
    assert registry.get_sample_value("scalelab_tasks_total", {"status": "completed"}) == 6


def test_health_is_degraded_for_a_while_after_a_storage_error(queue, runners, registry, clock):
    flaky = FlakyQueue(queue)
    runner = TaskRunner(flaky, lambda payload: None, 2, registry, clock=clock)
    runners.append(runner)
    runner.start()
    assert "status" not in runner.health()
    flaky.fail(claim=1)
    wait_for(flaky.pending(), what="the failure")
    health = wait_for(lambda: runner.health() if "status" in runner.health() else None, what="degraded")
    assert health["status"] == "degraded"
    assert "database is locked" in health["reasons"][0] and "claim a task" in health["reasons"][0]
    assert health["threads_alive"] == 2 and health["concurrency"] == 2
    clock.advance(STORAGE_ERROR_WINDOW_SECONDS)
    assert "status" not in runner.health()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread ends on purpose
def test_health_is_degraded_while_a_runner_thread_is_gone_until_the_supervisor_replaces_it(
    queue, runners, registry, monkeypatch
):
    monkeypatch.setattr(runner_module, "SUPERVISE_INTERVAL_SECONDS", 3600)  # this test calls supervise() itself
    flaky = FlakyQueue(queue)
    runner = start_runner(runners, flaky, lambda payload: None, 2, registry)
    assert "status" not in runner.health()
    flaky.fail(raising=SystemExit, claim=1)  # not an error a runner's loop catches: it ends the thread
    wait_for(lambda: runner.threads_alive() == 1, what="a runner thread to end")
    health = runner.health()
    assert health["status"] == "degraded"
    assert health["reasons"] == ["1 of 2 runner threads alive"]
    assert registry.get_sample_value("scalelab_worker_threads_alive") == 1
    assert runner.supervise() == 1
    assert runner.threads_alive() == 2 and runner.supervise() == 0
    assert registry.get_sample_value("scalelab_worker_thread_restarts_total") == 1
    task_id = runner.submit("after")
    assert wait_for(lambda: status_of(queue, task_id, "completed"), what="a task after the restart")


def test_a_depth_the_store_cannot_give_is_the_last_one_known(queue, registry):
    flaky = FlakyQueue(queue)
    runner = TaskRunner(flaky, lambda payload: None, 1, registry)
    queue.submit("waiting")
    assert runner.depth() == 1
    flaky.fail(depth=1)
    assert runner.depth() == 1
    assert registry.get_sample_value("scalelab_worker_storage_errors_total") == 1


def test_a_result_json_cannot_hold_fails_the_task_and_keeps_the_thread(queue, runners, registry):
    runner = start_runner(runners, queue, lambda payload: {"set": {1, 2}}, 1, registry)
    task_id = runner.submit("x")
    task = wait_for(lambda: status_of(queue, task_id, "completed", "failed"), what="the task to finish")
    assert task["status"] == "failed" and "JSON" in task["error"]
    assert runner.threads_alive() == 1


def test_runner_purges_finished_tasks_past_the_retention(path, runners, registry):
    queue = TaskQueue(path)
    runner = start_runner(runners, queue, lambda payload: payload, 1, registry, retention_seconds=0.05)
    task_id = runner.submit("short-lived")
    wait_for(lambda: status_of(queue, task_id, "completed"), what="the task to finish")
    wait_for(lambda: queue.get(task_id) is None, what="the purge")
    assert registry.get_sample_value("scalelab_tasks_purged_total") == 1


def test_runner_needs_a_positive_retention(queue, registry):
    with pytest.raises(ValueError, match="retention"):
        TaskRunner(queue, lambda payload: None, 1, registry, retention_seconds=0)
