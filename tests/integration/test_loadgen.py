"""The load engine: Locust in its own process, driven through its web API, counted in Prometheus."""

from __future__ import annotations

import time

import requests

from scalelab.load.engine import LoadEngine, LoadPlan

from .conftest import REQUEST_TIMEOUT, Stack, wait_for

T = REQUEST_TIMEOUT


def _metric_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_load_starts_and_stops_through_the_api_and_is_counted(healthy_stack: Stack) -> None:
    loadgen = healthy_stack.url("loadgen")
    form = {"user_count": 6, "spawn_rate": 6, "host": healthy_stack.lb, "mix_process": 20, "rate_per_user": 20}
    started = requests.post(loadgen + "/swarm", data=form, timeout=T).json()
    assert started["success"] is True, started
    try:

        def counted() -> list[str]:
            text = requests.get(loadgen + "/metrics", timeout=T).text
            lines = _metric_lines(text, "scalelab_loadgen_requests_total")
            gateways = {line.split('served_by="')[1].split('"')[0] for line in lines}
            endpoints = {line.split('endpoint="')[1].split('"')[0] for line in lines}
            seen = {"gateway-1", "gateway-2"} <= gateways and {"/data (hot keys)", "/process"} <= endpoints
            return lines if seen else []

        lines = wait_for(counted, timeout=15)
        assert all('status="5' not in line for line in lines), lines
        # Right after a swarm that follows a stop, Locust still reports the old run's "stopped" for a moment.
        stats = wait_for(
            lambda: (st := requests.get(loadgen + "/stats/requests", timeout=T).json())["state"] == "running" and st
        )
        assert stats["user_count"] == 6
        assert stats["fail_ratio"] == 0

        def scraped() -> bool:
            answer = requests.get(
                healthy_stack.url("prometheus") + "/api/v1/query",
                params={"query": 'sum(rate(scalelab_loadgen_requests_total{instance="loadgen"}[5s])) > 0'},
                timeout=T,
            ).json()
            return bool(answer["data"]["result"])

        wait_for(scraped, timeout=15)
    finally:
        assert requests.post(loadgen + "/stop", timeout=T).json()["success"] is True
    wait_for(lambda: requests.get(loadgen + "/stats/requests", timeout=T).json()["state"] == "stopped")


def test_the_load_engine_only_targets_its_own_stack(healthy_stack: Stack) -> None:
    loadgen = healthy_stack.url("loadgen")
    form = {"user_count": 1, "spawn_rate": 1, "host": "http://127.0.0.1:9"}
    refused = requests.post(loadgen + "/swarm", data=form, timeout=T)
    assert refused.status_code == 403
    assert "only targets " + healthy_stack.lb in refused.json()["message"]
    assert requests.get(loadgen + "/stats/requests", timeout=T).json()["state"] != "running"


def test_an_open_model_step_shape_sends_at_the_rate_it_is_due(healthy_stack: Stack) -> None:
    loadgen = healthy_stack.url("loadgen")
    engine = LoadEngine(loadgen, T, healthy_stack.lb)
    plan = LoadPlan(
        users=2, rate=10, duration=8, model="open", shape="steps", peak_rate=40, mix_data_hot=0, mix_data_new=0,
        mix_process=1, mix_longtask=0,
    )  # fmt: skip

    def sent() -> float:
        text = requests.get(loadgen + "/metrics", timeout=T).text
        lines = _metric_lines(text, "scalelab_loadgen_requests_total")
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'endpoint="/process"' in line)

    before = sent()
    engine.start(plan)
    try:
        time.sleep(3.5)
        early = sent() - before  # the first of four 2 s steps at 10 req/s, and part of the second at 20
        wait_for(lambda: requests.get(loadgen + "/stats/requests", timeout=T).json()["state"] == "stopped", 15)
        total = sent() - before
    finally:
        engine.stop()
    # Steps of 2 s at 10, 20, 30 and 40 req/s: 200 in all, 20 + 30 by 3.5 s.
    assert 30 <= early <= 70, early
    assert 160 <= total <= 210, total
