"""Prometheus against the live stack: every rule and every dashboard query returns data, alerts fire."""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from scalelab.generate.dashboards import dashboards, panel_queries

from .conftest import REQUEST_TIMEOUT, Stack, wait_for

T = REQUEST_TIMEOUT
RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules"
# What the alert rules promise: a killed instance fires ScaleLabInstanceDown within this many
# seconds (1 s scrape + 1 s evaluation + `for: 2s` + 1 s evaluation), plus slack for a busy machine.
INSTANCE_DOWN_PROMISE = 5.0
SLACK = 3.0
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def _prometheus(stack: Stack) -> str:
    names = [info.name for info in stack.orchestrator.instances()]
    if "prometheus" not in names:
        pytest.fail("the stack runs without Prometheus: install Debian's prometheus package (.ci/run does)")
    return stack.url("prometheus")


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    """Run an instant query; fail the test when Prometheus rejects it."""
    response = requests.get(prometheus + "/api/v1/query", params={"query": expr}, timeout=T)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"Prometheus rejected {expr!r}: {body}"
    return body["data"]["result"]


def recording_rules() -> list[str]:
    groups = yaml.safe_load((RULES / "recording.yml").read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """Return the metric names an expression reads (functions, keywords and labels left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def reads_containers(expr: str) -> bool:
    """Return whether a query reads the Docker engine's figures of the containers (none when the stack is processes)."""
    return re.search(r"\b(instance:container_|scalelab_container_)", expr) is not None


def drive_traffic(stack: Stack, seconds: float) -> None:
    """Cache hits and misses, /process, tasks and an error, from a few threads, for ``seconds``."""
    headers = stack.auth()
    stop = time.monotonic() + seconds

    def client(kind: str) -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                if kind == "hits":
                    session.get(stack.lb + "/data", headers=headers, timeout=T)
                elif kind == "misses":
                    session.get(stack.lb + "/data", params={"key": uuid.uuid4().hex}, headers=headers, timeout=T)
                elif kind == "process":
                    session.get(stack.lb + "/process", headers=headers, timeout=T)
                else:
                    session.post(stack.lb + "/longtask", json={"duration": 0}, headers=headers, timeout=T)
                    session.get(stack.lb + "/no-such-route", timeout=T)
                    time.sleep(0.1)

    threads = [threading.Thread(target=client, args=(kind,)) for kind in ("hits", "hits", "misses", "process", "tasks")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_every_rule_and_panel_query_returns_data(healthy_stack: Stack) -> None:
    prometheus = _prometheus(healthy_stack)
    drive_traffic(healthy_stack, seconds=6)
    gateways = [g["metric"]["instance"] for g in query(prometheus, 'scalelab_instance_info{service="gateway"}')]
    assert sorted(gateways) == ["gateway-1", "gateway-2"]
    checks = [(f"recording rule {name}", name) for name in recording_rules()]
    overview = dashboards()["scalelab-overview.json"]
    checks += [
        (title, expr.replace("$gateway", "|".join(gateways)))
        for title, expr in panel_queries(overview)
        if not title.startswith("annotation")
    ]

    if not healthy_stack.orchestrator.limits_instances:
        # Processes, not containers: no engine counts them and they have no limits. tests/compose checks these.
        checks = [(title, expr) for title, expr in checks if not reads_containers(expr)]

    def empty() -> list[str]:
        drive_traffic(healthy_stack, seconds=1)  # keep the 10 s windows filled while we look
        return [title for title, expr in checks if not query(prometheus, expr)]

    missing = empty()
    deadline = time.monotonic() + 20
    while missing and time.monotonic() < deadline:
        missing = empty()
    assert not missing, f"these return no data: {missing}"


def test_every_metric_a_panel_reads_is_exported(healthy_stack: Stack) -> None:
    exported = {"up"} | set(recording_rules())
    # The control page exports its actions' metrics too (Grafana annotates them); a labelled
    # metric with no action yet has only its TYPE line, which declares it all the same.
    for info in [*healthy_stack.services(), healthy_stack.orchestrator.get("dashboard")]:
        text = requests.get(info.url + "/metrics", timeout=T).text
        exported |= {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
        exported |= {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    for dashboard in dashboards().values():
        for title, expr in panel_queries(dashboard):
            unknown = metric_names(expr) - exported
            assert not unknown, f"{title} reads {sorted(unknown)}, which no service exports"


def test_knob_changes_show_as_annotations(healthy_stack: Stack) -> None:
    prometheus = _prometheus(healthy_stack)
    expr = dict((t, e) for t, e in panel_queries(dashboards()["scalelab-overview.json"]))["annotation 'Knob changes'"]
    time.sleep(2.5)  # let an earlier change leave the 2 s window: the check must see this one
    healthy_stack.control("database", latency_ms=80.0)
    try:
        changed = wait_for(lambda: query(prometheus, expr), timeout=5, interval=0.2)
        assert {"instance": "database", "knob": "latency_ms"}.items() <= changed[0]["metric"].items()
    finally:
        healthy_stack.control("database", latency_ms=50.0)


def test_a_killed_gateway_shows_down_and_fires_its_alerts(healthy_stack: Stack) -> None:
    prometheus = _prometheus(healthy_stack)
    wait_for(lambda: query(prometheus, 'up{job="scalelab", instance="gateway-2"} == 1'), timeout=10)
    healthy_stack.orchestrator.kill("gateway-2")
    killed = time.monotonic()
    wait_for(lambda: query(prometheus, 'up{job="scalelab", instance="gateway-2"} == 0'), timeout=3, interval=0.2)
    firing = 'ALERTS{alertname="ScaleLabInstanceDown", instance="gateway-2", alertstate="firing"}'
    wait_for(lambda: query(prometheus, firing), timeout=INSTANCE_DOWN_PROMISE + SLACK, interval=0.2)
    assert time.monotonic() - killed <= INSTANCE_DOWN_PROMISE + SLACK
    backend = 'ALERTS{alertname="ScaleLabBackendDown", backend="gateway-2", alertstate="firing"}'
    wait_for(lambda: query(prometheus, backend), timeout=INSTANCE_DOWN_PROMISE + SLACK, interval=0.2)
    status = query(prometheus, 'pool_backend:scalelab_backend_up:min{pool="gateways", backend="gateway-2"}')
    assert status and status[0]["value"][1] == "0"
