"""The Grafana dashboards, generated as JSON so that ids, uids and the datasource stay consistent.

Panels per balanced tier come from the catalog. ``python -m scalelab.generate.dashboards``
rewrites grafana/dashboards/; a test checks the committed files equal what this module generates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scalelab import catalog
from scalelab.paths import stack_file

__all__ = ["DATASOURCE_UID", "dashboard_dir", "dashboards", "panel_queries", "write_dashboards"]

DATASOURCE_UID = "scalelab-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
GRID_WIDTH = 24


class _Layout:
    """Place panels left to right in rows of a fixed height; ids count up in order of creation."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._y += self._row_height
        self._x, self._row_height = 0, 1
        self.panels.append(
            {"id": self._next_id(), "type": "row", "title": title, "collapsed": False,
             "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": self._y}, "panels": []}
        )  # fmt: skip
        self._y += 1
        self._row_height = 0

    def add(self, panel: dict[str, Any], width: int = 8, height: int = 8) -> None:
        if self._x + width > GRID_WIDTH:
            self._y += self._row_height
            self._x, self._row_height = 0, 0
        panel["id"] = self._next_id()
        panel["gridPos"] = {"h": height, "w": width, "x": self._x, "y": self._y}
        self._x += width
        self._row_height = max(self._row_height, height)
        self.panels.append(panel)


def _target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref, "interval": "1s"}


def _targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    return [_target(expr, legend, chr(ord("A") + n)) for n, (expr, legend) in enumerate(queries)]


def _panel(kind: str, title: str, description: str, queries: list[tuple[str, str]],
           defaults: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(*queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def timeseries(title: str, description: str, queries: list[tuple[str, str]], unit: str = "short",
               stepped: bool = False, stack: bool = False) -> dict[str, Any]:  # fmt: skip
    """Return a time series panel."""
    custom: dict[str, Any] = {"lineWidth": 2, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    if stepped:
        custom["lineInterpolation"] = "stepAfter"
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    options = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
    return _panel("timeseries", title, description, queries, {"unit": unit, "custom": custom}, options)


def state_timeline(title: str, description: str, queries: list[tuple[str, str]],
                   states: dict[str, tuple[str, str]]) -> dict[str, Any]:  # fmt: skip
    """Return a state timeline panel; ``states`` maps a value to its (text, colour)."""
    mappings = [
        {"type": "value", "options": {value: {"text": text, "color": color, "index": n}}}
        for n, (value, (text, color)) in enumerate(states.items())
    ]
    defaults = {"mappings": mappings, "color": {"mode": "thresholds"}, "custom": {"fillOpacity": 80}}
    options = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}
    return _panel("state-timeline", title, description, queries, defaults, options)


UP_DOWN = {"1": ("up", "green"), "0": ("down", "red")}
ON_OFF = {"1": ("on", "green"), "0": ("off", "orange")}


def overview() -> dict[str, Any]:
    """Return the overview dashboard: the one a lab user opens first."""
    layout = _Layout()
    entry = catalog.entry().name
    entry_words = entry.replace("-", " ")
    # Nearest the entry first: the order a request travels.
    balanced = list(reversed(catalog.balanced()))
    layout.row("Traffic")
    for svc in balanced:
        holder = svc.pool.holder.replace("-", " ") if svc.pool else ""
        layout.add(timeseries(
            f"Requests per second by {svc.name}",
            f"What each {svc.name} serves, as the {holder}s spread it: kill one and watch the others take it all.",
            [(f'sum by (instance) (instance_status:scalelab_http_requests:rate10s{{service="{svc.name}"}})',
              "{{instance}}")],
            "reqps", stack=True))  # fmt: skip
    layout.add(timeseries(
        f"Status codes at the {entry_words}", "Answers the clients got, by HTTP status.",
        [(f'sum by (status) (instance_status:scalelab_http_requests:rate10s{{service="{entry}"}})', "{{status}}")],
        "reqps", stack=True))  # fmt: skip
    layout.add(timeseries(
        f"Latency at the {entry_words}", f"What clients wait, from the {entry_words}'s histogram.",
        [(f'instance:scalelab_http_request_duration_seconds:p{q}_rate10s{{service="{entry}"}}', f"p{q}")
         for q in (50, 95, 99)],
        "s"), width=12)  # fmt: skip
    front = balanced[0].name  # the tier right behind the entry
    layout.add(timeseries(
        f"p99 latency by {front}", f"Each selected {front}'s own p99 (all routes).",
        [(f'instance:scalelab_http_request_duration_seconds:p99_rate10s{{service="{front}", instance=~"${front}"}}',
          "{{instance}}")],
        "s"), width=12)  # fmt: skip
    layout.row("Failover")
    layout.add(state_timeline(
        "Backend health", "Each pool's view of its backends: the balancer's gateways, the gateways' microservices.",
        [("pool_backend:scalelab_backend_up:min", "{{pool}} / {{backend}}")], UP_DOWN), width=12)  # fmt: skip
    layout.add(state_timeline(
        "Instances Prometheus can scrape", "A killed or paused instance stops answering /metrics.",
        [('up{job="scalelab"}', "{{instance}}")], UP_DOWN), width=12)  # fmt: skip
    layout.add(timeseries(
        "Requests per second by backend", "What each pool sends to each backend.",
        [("pool_backend:scalelab_backend_requests:rate10s", "{{pool}} / {{backend}}")], "reqps"), width=12)  # fmt: skip
    layout.add(timeseries(
        "Retries per second", "Requests sent to another backend after theirs failed: failover at work.",
        [("pool_backend:scalelab_backend_retries:rate10s", "{{pool}} / {{backend}}")], "reqps"), width=12)  # fmt: skip
    layout.row("Cache")
    layout.add(timeseries(
        "Cache hit ratio", "Share of the gateways' /data lookups the cache answered (0 while the cache is off).",
        [("scalelab_gateway_cache_hit_ratio:rate10s", "hit ratio")], "percentunit"))  # fmt: skip
    layout.add(timeseries(
        "Cache operations per second", "Hits, misses, and entries dropped for room (evictions) or age (expirations).",
        [("sum(rate(scalelab_cache_hits_total[10s]))", "hits"),
         ("sum(rate(scalelab_cache_misses_total[10s]))", "misses"),
         ("sum(rate(scalelab_cache_evictions_total[10s]))", "evictions"),
         ("sum(rate(scalelab_cache_expirations_total[10s]))", "expirations")], "ops"))  # fmt: skip
    layout.add(timeseries(
        "Gateway cache lookups by result",
        "hit, miss, error (cache down: read from the database) or bypass (cache off).",
        [("sum by (result) (rate(scalelab_gateway_cache_lookups_total[10s]))", "{{result}}")], "ops",
        stack=True))  # fmt: skip
    layout.row("Database and worker")
    layout.add(timeseries(
        "Database queries per second", "What reaches the database: it climbs when the cache is off or cold.",
        [("operation:scalelab_db_queries:rate10s", "{{operation}}")], "qps", stack=True), width=6)  # fmt: skip
    layout.add(timeseries(
        "Database p99 query time", "Simulated latency included: the latency_ms and jitter_ms knobs show here.",
        [("operation:scalelab_db_query_duration_seconds:p99_rate10s", "{{operation}}")], "s"), width=6)  # fmt: skip
    layout.add(timeseries(
        "Task queue", "Tasks waiting and running in the worker.",
        [("scalelab_tasks_queue_depth:sum", "queued"), ("sum(scalelab_tasks_in_progress)", "running")]),
        width=6)  # fmt: skip
    layout.add(timeseries(
        "Tasks finished per second", "Completed and failed tasks.",
        [("status:scalelab_tasks:rate10s", "{{status}}")], "ops", stack=True), width=6)  # fmt: skip
    layout.row("Tactics: shedding, breakers, retries, scaling")
    layout.add(timeseries(
        "Admitted and shed per second",
        "Client requests the gateways let in, and those refused early: client_rate (429, a client over its rate "
        "limit) or concurrency (503, the fixed or adaptive limit reached).",
        [("sum(rate(scalelab_admitted_total[10s]))", "admitted"),
         ("sum by (reason) (rate(scalelab_shed_total[10s]))", "shed: {{reason}}")], "ops"), width=6)  # fmt: skip
    layout.add(timeseries(
        "Concurrency limit per gateway",
        "Requests each gateway admits at once (0: no limit). The adaptive limit moves with the latency.",
        [("scalelab_concurrency_limit", "{{instance}}")]), width=6)  # fmt: skip
    layout.add(timeseries(
        "Circuit breakers not closed",
        "Breakers open or half-open: a gateway's on a microservice, or on the cache or the database.",
        [('sum by (instance, backend) (scalelab_backend_breaker_state{pool="microservices",state!="closed"})',
          "{{instance}} → {{backend}}"),
         ('sum by (instance, target) (scalelab_gateway_breaker_state{state!="closed"})',
          "{{instance}} → {{target}}")]), width=6)  # fmt: skip
    layout.add(timeseries(
        "Retries, and retries the budget refused",
        "Failed calls sent to another microservice, and those the retry budget did not allow (an outage).",
        [("sum(rate(scalelab_backend_retries_total[10s]))", "retried"),
         ("sum(rate(scalelab_retries_refused_total[10s]))", "refused by the budget")], "ops"), width=6)  # fmt: skip
    scaling = "|".join(catalog.scalable())
    layout.add(timeseries(
        "Instances up per service",
        "Instances of each service that scales, as Prometheus reaches them: the autoscaler's decisions show here.",
        [(f'count by (service) (up{{service=~"{scaling}"}} == 1)', "{{service}}")]), width=24)  # fmt: skip
    layout.row("Resources")
    layout.add(timeseries(
        "CPU per instance", "Cores each instance keeps busy (1: one core all the time); one machine's share its cores.",
        [("instance:process_cpu_seconds:rate10s", "{{instance}}")], "short"), width=12)  # fmt: skip
    layout.add(timeseries(
        "Resident memory per instance", "Memory each instance holds; it should stay flat under steady load.",
        [("instance:process_resident_memory_bytes:sum", "{{instance}}")], "bytes"), width=12)  # fmt: skip
    # The Docker engine's figures: containers only (local processes have no container and no limit).
    layout.add(timeseries(
        "Container CPU, share of its limit",
        "CPU of everything in each container, as the Docker engine counts it, over the cores it may use: "
        "at 100% the kernel throttles it. Containers only; one without a CPU limit has no line.",
        [("instance:container_cpu_limit_share:ratio", "{{instance}}")], "percentunit"), width=12)  # fmt: skip
    layout.add(timeseries(
        "Container memory, share of its limit",
        "Memory each container uses (page cache the kernel can take back left out, as docker stats shows it) "
        "over its limit: at 100% the kernel kills a process in it. Containers only.",
        [("instance:container_memory_limit_share:ratio", "{{instance}}")], "percentunit"), width=12)  # fmt: skip
    layout.row("Knobs")
    layout.add(state_timeline(
        "Cache switch per gateway", "The gateways' cache_enabled knob.",
        [('scalelab_knob_value{knob="cache_enabled"}', "{{instance}}")], ON_OFF), width=8)  # fmt: skip
    layout.add(timeseries(
        "Injected delays and error rates", "Knobs that slow or break a service, so a change shows on the time axis.",
        [('scalelab_knob_value{knob=~"latency_ms|jitter_ms|extra_latency_ms|service_time_ms"}',
          "{{instance}} {{knob}}")], "ms", stepped=True), width=8)  # fmt: skip
    layout.add(timeseries(
        "Error-rate knobs", "Share of requests a service fails on purpose.",
        [('scalelab_knob_value{knob="error_rate"}', "{{instance}}")], "percentunit", stepped=True),
        width=8)  # fmt: skip
    return {
        "uid": "scalelab-overview",
        "title": "ScaleLab overview",
        "description": "Traffic, failover, cache, database and worker of the ScaleLab stack, at one-second resolution.",
        "tags": ["scalelab"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "2s",
        "time": {"from": "now-5m", "to": "now"},
        "timepicker": {"refresh_intervals": ["1s", "2s", "5s", "10s", "30s"]},
        "schemaVersion": 39,
        "version": 1,
        "templating": {
            "list": [
                {
                    "name": front,
                    "label": front.capitalize(),
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": f'label_values(scalelab_instance_info{{service="{front}"}}, instance)',
                        "refId": "instances",
                    },
                    "definition": f'label_values(scalelab_instance_info{{service="{front}"}}, instance)',
                    "refresh": 2,
                    "multi": True,
                    "includeAll": True,
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                }
            ]
        },
        "annotations": {
            "list": [
                {
                    "name": "Health changes",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "red",
                    "expr": "increase(scalelab_backend_health_transitions_total[2s]) > 0",
                    "step": "1s",
                    "titleFormat": "{{backend}} went {{to}}",
                    "tagKeys": "pool,backend",
                },
                {
                    "name": "Knob changes",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "orange",
                    "expr": "changes(scalelab_knob_value[2s]) > 0",
                    "step": "1s",
                    "titleFormat": "{{instance}} changed {{knob}}",
                    "tagKeys": "instance,knob",
                },
                {
                    # The control page's presses. The series' value is the press's own time, so the
                    # mark sits where it happened, even on the first sample of a new series.
                    "name": "Control actions",
                    "datasource": DATASOURCE,
                    "enable": True,
                    "iconColor": "blue",
                    "expr": "scalelab_control_action_last_timestamp_seconds * 1000",
                    "step": "1s",
                    "useValueForTime": True,
                    "titleFormat": "{{action}} {{target}}",
                    "tagKeys": "action,target",
                },
            ]
        },
        "panels": layout.panels,
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """Return every dashboard by file name."""
    return {"scalelab-overview.json": overview()}


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Yield ``(panel title, PromQL)`` for every query of every panel, annotations included."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} ({target['refId']})", target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]


def render(dashboard: dict[str, Any]) -> str:
    """Return the dashboard as the JSON text committed under grafana/dashboards/."""
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def dashboard_dir() -> Path:
    """Return the folder Grafana provisions the dashboards from (grafana/dashboards)."""
    return stack_file("grafana", "dashboards")


def write_dashboards(directory: Path | None = None) -> list[Path]:
    """Write every dashboard into ``directory`` (grafana/dashboards) and return the paths."""
    directory = directory or dashboard_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, dashboard in dashboards().items():
        path = directory / name
        path.write_text(render(dashboard))
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in write_dashboards():
        print(f"wrote {written}")
