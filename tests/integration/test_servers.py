"""Every service can also run on gunicorn (SCALELAB_SERVER=gunicorn), with either worker class."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from .conftest import wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("worker_class", ["gevent", "gthread"])
def test_a_service_serves_on_gunicorn(worker_class: str) -> None:
    port = _free_port()
    env = {**os.environ, "SCALELAB_SERVER": "gunicorn", "SCALELAB_WORKER_CLASS": worker_class,
           "SCALELAB_BIND": "127.0.0.1", "CACHE_PORT": str(port), "SCALELAB_INSTANCE": "cache-on-gunicorn"}  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "services", "cache"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:

        def answers() -> dict | None:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except requests.ConnectionError:
                return None

        assert wait_for(answers, timeout=20)["instance"] == "cache-on-gunicorn"
        stored = requests.post(f"http://127.0.0.1:{port}/cache/k", json={"value": 1}, timeout=5)
        assert stored.status_code == 201
        assert requests.get(f"http://127.0.0.1:{port}/cache/k", timeout=5).json()["value"] == 1
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
