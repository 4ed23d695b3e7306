"""The stack as the control app sees it: instances from the orchestrator, state from the services' routes.

Every call carries a short timeout: a paused instance must cost the page a fraction of a
second, never a hang.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from scalelab import catalog
from scalelab.orchestrators.base import InstanceInfo, Orchestrator
from services.kit.auth import ADMIN_HEADER

__all__ = ["ServiceError", "StackClient", "Tile", "status_routes"]
PROBE_WORKERS = 16


def status_routes() -> dict[str, str]:
    """Return ``holder service -> route`` where each service that holds a pool shows its backends."""
    return {pool.holder: pool.status_route for _service, pool in catalog.pool_holders()}


@functools.cache
def shedding_services() -> frozenset[str]:
    """Return the services that shed load (they have the shedding knob) and report it on their health route."""
    return frozenset(svc.name for svc in catalog.SERVICES if any(knob.name == "shedding" for knob in svc.knobs))


def admission_text(admission: dict[str, Any]) -> str:
    """Return a tile's words for an instance's admission state ("" while it limits nothing and shed nothing)."""
    parts = []
    if admission.get("mode", "off") != "off":
        parts.append(f"shedding {admission['mode']} (limit {admission.get('limit')})")
    if admission.get("client_rate_limit"):
        parts.append(f"{admission['client_rate_limit']:g} req/s per client")
    if admission.get("shed"):
        parts.append(f"{admission['shed']} shed")
    return ", ".join(parts)


# A gateway's health report names the breaker on each dependency it calls: "cache_breaker", "database_breaker".
BREAKER_SUFFIX = "_breaker"


def tripped_breakers(reports: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Return ``dependency instance -> "breaker open in 1 of 2 gateways"`` from the gateways' health reports."""
    states: dict[str, list[str]] = {}
    for report in reports.values():
        for key, state in report.items():
            if key.endswith(BREAKER_SUFFIX) and isinstance(state, str):
                states.setdefault(key.removesuffix(BREAKER_SUFFIX), []).append(state)
    said = {}
    for dependency, seen in states.items():
        tripped = sorted({state for state in seen} - {"closed"})
        if tripped:
            count = sum(1 for state in seen if state != "closed")
            said[dependency] = (
                f"breaker {' / '.join(t.replace('_', '-') for t in tripped)} in {count} of {len(seen)} gateways"
            )
    return said


class ServiceError(RuntimeError):
    """A service answered with an error or not at all; the message names it and its address."""


@dataclass(frozen=True)
class Tile:
    """One instance on the topology: what runs, how its balancer sees it, and its load."""

    name: str
    service: str
    url: str
    state: str  # healthy, down, paused, starting, stopped
    process: str  # the orchestrator's view: running, paused, stopped
    in_flight: int | None = None
    served: int | None = None  # requests its balancer sent it so far
    detail: str = ""


class StackClient:
    """Read and change the running stack through the orchestrator and the services' HTTP routes."""

    def __init__(self, orchestrator: Orchestrator, admin_token: Callable[[], str], timeout: float) -> None:
        self.orchestrator = orchestrator
        self._admin_token = admin_token
        self.timeout = timeout
        self._session = requests.Session()
        self._pool = concurrent.futures.ThreadPoolExecutor(PROBE_WORKERS, thread_name_prefix="probe")

    # ---------------------------------------------------------------- HTTP
    def call(self, info: InstanceInfo, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """Send an admin request to an instance and return its JSON; raise ServiceError on any failure."""
        try:
            response = self._session.request(
                method,
                info.url + path,
                json=body,
                headers={ADMIN_HEADER: self._admin_token()},
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as exc:
            raise ServiceError(f"{info.name} at {info.url} did not answer {method} {path}: {exc}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        if response.status_code >= 400:
            message = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise ServiceError(f"{info.name} refused {method} {path} ({response.status_code}): {message}")
        return payload

    def metrics(self, info: InstanceInfo) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Return an instance's /metrics samples as ``{(name, sorted labels): value}``."""
        try:
            response = self._session.get(info.url + "/metrics", timeout=self.timeout)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise ServiceError(f"{info.name} at {info.url} did not serve /metrics: {exc}") from None
        samples = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    def health_report(self, info: InstanceInfo) -> dict[str, Any]:
        """Return what an instance reports on its health route ({} when it does not answer)."""
        try:
            body = self._session.get(info.url + info.health_path, timeout=self.timeout / 2).json()
        except (requests.RequestException, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def healthy(self, info: InstanceInfo) -> bool:
        """Return whether an instance answers its health route with 200."""
        try:
            return self._session.get(info.url + info.health_path, timeout=self.timeout / 2).status_code == 200
        except requests.RequestException:
            return False

    # ---------------------------------------------------------------- reading
    def instances(self) -> list[InstanceInfo]:
        """Return every instance the orchestrator knows."""
        return self.orchestrator.instances()

    def pools(self, instances: list[InstanceInfo]) -> dict[str, dict[str, Any]]:
        """Return each balancing instance's pool status by its name (unreachable ones left out)."""
        routes = status_routes()
        balancers = [
            (info, routes[info.service]) for info in instances if info.service in routes and info.state == "running"
        ]
        futures = {info.name: self._pool.submit(self.call, info, "GET", route) for info, route in balancers}
        pools = {}
        for name, future in futures.items():
            try:
                pools[name] = future.result()
            except ServiceError:
                continue
        return pools

    def tiles(self, instances: list[InstanceInfo], pools: dict[str, dict[str, Any]]) -> list[Tile]:
        """Return one tile per instance, its state taken from its balancers where it has them."""
        views: dict[str, list[dict[str, Any]]] = {}
        for pool in pools.values():
            for backend in pool.get("backends", []):
                views.setdefault(backend["name"], []).append(backend)
        unbalanced = [info for info in instances if info.name not in views and info.state == "running"]
        probes = {info.name: self._pool.submit(self.healthy, info) for info in unbalanced if info.health is None}
        shedders = shedding_services()
        reports = {
            info.name: self._pool.submit(self.health_report, info)
            for info in instances
            if info.service in shedders and info.state == "running"
        }
        reported = {name: future.result() for name, future in reports.items()}
        on_dependencies = tripped_breakers(reported)
        tiles = []
        for info in instances:
            seen = views.get(info.name, [])
            in_flight = sum(view.get("in_flight", 0) for view in seen) if seen else None
            served = sum(view.get("requests_served", 0) for view in seen) if seen else None
            up = sum(1 for view in seen if view["healthy"])
            rotation = ""
            if seen:
                rotation = f"in rotation in {up} of {len(seen)} pools"
                if up in (0, len(seen)):
                    rotation = "in rotation" if up else "out of rotation"
                # A breaker that is not closed: the pools skip it though it passes its health checks.
                breakers = sorted({view.get("breaker", "closed") for view in seen} - {"closed"})
                if breakers:
                    tripped = sum(1 for view in seen if view.get("breaker", "closed") != "closed")
                    rotation += f" · breaker {' / '.join(b.replace('_', '-') for b in breakers)} in {tripped}"
            admission = reported.get(info.name, {}).get("admission")
            said = admission_text(admission) if isinstance(admission, dict) else ""
            if info.name in on_dependencies:
                said = ", ".join(filter(None, [said, on_dependencies[info.name]]))
            if said:
                rotation = f"{rotation} · {said}" if rotation else said
            if info.state == "stopped":
                state = "down"
            elif info.state == "paused":
                state = "paused"
            elif seen:
                # Running but not (yet) passing its balancers' checks: just started or resumed.
                state = "starting" if up == 0 else "healthy"
            elif info.health is not None:
                state = {"healthy": "healthy", "starting": "starting"}.get(info.health, "down")
            else:
                state = "healthy" if probes[info.name].result() else "down"
            tiles.append(Tile(info.name, info.service, info.url, state, info.state, in_flight, served, rotation))
        return tiles
