"""The lab's simulated users: a mix of cache-friendly reads, ever-new keys, /process and /longtask.

Run by the load engine process (`locust -f dashboard/loadgen/locustfile.py`); the mix, the number
of hot keys and the pace per user are options that the swarm form (or its API) can change.
Client-side metrics are served on the Locust web UI at /metrics.
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from typing import Any

from flask import Response
from locust import FastHttpUser, events, task
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from dashboard.loadgen.metrics import ClientMetrics

METRICS = ClientMetrics(CollectorRegistry())
# Endpoint names: bounded labels for the metrics and Locust's statistics.
DATA_HOT, DATA_NEW, PROCESS, LONGTASK = "/data (hot keys)", "/data (new keys)", "/process", "/longtask"
_new_keys = itertools.count()


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--mix-data-hot", type=int, default=70, include_in_web_ui=True,
                        help="weight of /data on a few hot keys (cache-friendly)")  # fmt: skip
    parser.add_argument("--mix-data-new", type=int, default=10, include_in_web_ui=True,
                        help="weight of /data on ever-new keys (always a cache miss)")  # fmt: skip
    parser.add_argument("--mix-process", type=int, default=15, include_in_web_ui=True, help="weight of /process")
    parser.add_argument("--mix-longtask", type=int, default=5, include_in_web_ui=True, help="weight of /longtask")
    parser.add_argument("--hot-keys", type=int, default=10, include_in_web_ui=True, help="how many hot keys")
    parser.add_argument("--rate-per-user", type=float, default=0.0, include_in_web_ui=True,
                        help="requests per second per user; 0 = as fast as the stack answers")  # fmt: skip


@events.request.add_listener
def _count(name: str, response_time: float, response: Any, exception: BaseException | None, **_: Any) -> None:
    METRICS.record(name, response, response_time / 1000, exception is not None)


@events.init.add_listener
def _serve_metrics(environment: Any, **_: Any) -> None:
    if environment.web_ui is None:
        return

    @environment.web_ui.app.route("/metrics")
    def metrics() -> Response:
        runner = environment.runner
        METRICS.users.set(runner.user_count if runner is not None else 0)
        return Response(generate_latest(METRICS.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


class LabUser(FastHttpUser):
    """One simulated client of the lab: takes a token, then sends the configured mix."""

    def on_start(self) -> None:
        self.token = ""
        self.last_start = 0.0
        self.refresh_token()

    def refresh_token(self) -> None:
        with self.client.get("/token", name="/token", catch_response=True) as response:
            if response.status_code == 200:
                self.token = response.json()["token"]
            else:
                response.failure(f"no token: {response.status_code}")

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.rate_per_user
        if rate <= 0:
            return 0.0
        return max(0.0, 1.0 / rate - (time.monotonic() - self.last_start))

    @task
    def one_request(self) -> None:
        self.last_start = time.monotonic()
        options = self.environment.parsed_options
        weights = [options.mix_data_hot, options.mix_data_new, options.mix_process, options.mix_longtask]
        if sum(weights) <= 0:
            return
        endpoint = random.choices([DATA_HOT, DATA_NEW, PROCESS, LONGTASK], weights)[0]
        headers = {"Authorization": self.token}
        if endpoint == DATA_HOT:
            key = f"hot-{random.randrange(max(1, options.hot_keys))}"
            response = self.client.get("/data", params={"key": key}, headers=headers, name=endpoint)
        elif endpoint == DATA_NEW:
            key = f"new-{uuid.uuid4().hex[:8]}-{next(_new_keys)}"
            response = self.client.get("/data", params={"key": key}, headers=headers, name=endpoint)
        elif endpoint == PROCESS:
            response = self.client.get("/process", headers=headers, name=endpoint)
        else:
            response = self.client.post("/longtask", json={"duration": 0.5}, headers=headers, name=endpoint)
        if response.status_code == 401:
            self.refresh_token()
