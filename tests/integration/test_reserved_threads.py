"""Health checks and admin routes are answered while every request thread waits (services/kit/admission.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import wait_for
from .test_servers import _free_port

REQUEST_THREADS = 2
QUEUED = 2
WORK_SECONDS = 2.0


@pytest.fixture(params=[("granian", ""), ("gunicorn", "gthread")], ids=["granian", "gunicorn-gthread"])
def busy_microservice(request):
    """A microservice with two request threads and room for two more requests to wait, each call taking two seconds."""
    server, worker_class = request.param
    port = _free_port()
    env = {**os.environ, "SCALELAB_SERVER": server, "SCALELAB_WORKER_CLASS": worker_class or "gthread",
           "SCALELAB_BIND": "127.0.0.1", "MICROSERVICE_PORT": str(port), "SCALELAB_INSTANCE": "microservice-busy",
           "SCALELAB_THREADS": str(REQUEST_THREADS), "SCALELAB_QUEUED_REQUESTS": str(QUEUED),
           "SCALELAB_ADMIN_TOKEN": "t",
           "MICROSERVICE_SERVICE_TIME_MS": str(WORK_SECONDS * 1000)}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "microservice"], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(url + "/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, timeout=20)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_health_and_admin_answer_while_every_request_thread_waits(busy_microservice):
    url = busy_microservice
    with ThreadPoolExecutor(8) as pool:
        work = [pool.submit(timed, lambda: requests.get(url + "/process", timeout=10)) for _ in range(8)]
        time.sleep(0.3)  # every request thread is now inside its two-second call, and the queue is full
        for _ in range(5):
            health, took = timed(lambda: requests.get(url + "/health", timeout=2))
            assert health.status_code == 200 and took < 0.3, f"/health took {took:.2f} s"
        control, took = timed(lambda: requests.get(url + "/control", headers={"X-Admin-Token": "t"}, timeout=2))
        assert control.status_code == 200 and took < 0.3
        metrics = requests.get(url + "/metrics", timeout=2)
        assert metrics.status_code == 200
        results = [future.result() for future in work]
    served = [took for response, took in results if response.status_code == 200]
    refused = [(response, took) for response, took in results if response.status_code == 503]
    assert len(served) == REQUEST_THREADS + QUEUED and len(refused) == 8 - REQUEST_THREADS - QUEUED
    assert sorted(served)[-1] > 2 * WORK_SECONDS - 0.5  # the queued ones ran after the first two
    for response, took in refused:  # at once, saying who is busy and what to do
        assert took < 1.0
        assert response.headers["Retry-After"] == "1"
        assert "microservice-busy is busy" in response.json()["error"]
    refusals = requests.get(url + "/metrics", timeout=2).text
    assert f"scalelab_requests_refused_busy_total {8 - REQUEST_THREADS - QUEUED}.0" in refusals
