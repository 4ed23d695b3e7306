"""The Docker engine's own figures of each lab container, exported as Prometheus metrics.

A service's process collector counts its one Python process. The engine counts everything in
the container (every process in it, and the memory the kernel charges to it) and knows the
container's limits, so only it can say how close an instance is to the CPU and memory it may use.

:class:`ContainerStatsCollector` is a prometheus-client collector. It lists the running
containers of the lab stack (the compose project's, and the tasks of the Docker Swarm stack of
the same name) at most once per :data:`CACHE_SECONDS`, and follows each one's stats stream in a
thread of its own: the engine reads a container's cgroup once a second and sends the figures to
everyone who follows it. A scrape only lists and copies the latest figures, so it takes
milliseconds, and the engine reads each container once a second however often it is scraped.

Why a stream and not one reading per scrape: even a one-shot reading (``one_shot=True``, which
skips the wait for a second sample) is answered at the engine's next once-a-second collection
whenever anything else follows a container's stats. Measured on Docker 20.10 that is 0.7 to
1.0 s per scrape, Prometheus's whole 1 s scrape timeout.

Without an engine it exports nothing, and logs that once. Its series are labelled
``container_instance`` and ``container_service``, not ``instance`` and ``service``: the process
that serves them is itself a Prometheus target, and the target's own ``instance`` and ``service``
labels would overwrite the series' labels (the lab's scrape job keeps ``honor_labels`` off, so
that no service can pass itself off as another). The recording rules copy the two labels back to
``instance`` and ``service``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from scalelab import catalog
from scalelab.generate.compose import PROJECT
from scalelab.orchestrators.docker import PROJECT_LABEL, SERVICE_LABEL, engine_socket_exists
from scalelab.orchestrators.swarm import task_instance

__all__ = [
    "CACHE_SECONDS",
    "INSTANCE_LABEL",
    "SERVICE_NAME_LABEL",
    "ContainerFigures",
    "ContainerStatsCollector",
    "cpu_limit_cores",
    "figures",
    "instance_of",
    "memory_limit_bytes",
    "memory_usage_bytes",
]

log = logging.getLogger(__name__)

# `docker compose run` containers carry the service's label too; they are not instances.
ONEOFF_LABEL = "com.docker.compose.oneoff"

INSTANCE_LABEL = "container_instance"
SERVICE_NAME_LABEL = "container_service"

# Engine API version of Docker 20.10, the oldest engine the lab's compose file is tested on.
MIN_API_VERSION = "1.41"
# Scrapes come once a second; a second scraper within this time shares the listing.
CACHE_SECONDS = 0.5
# The engine sends a frame a second; a stream silent for this long is given up (and started again).
STREAM_TIMEOUT_SECONDS = 5.0
# Figures older than this are not exported: their stream has stalled.
STALE_SECONDS = 3.0
# One request to the engine (the version, the listing, one inspect) gives up after this: a scrape waits for the
# listing, and must end within Prometheus's 1 s scrape timeout. (A listing takes 5 to 25 ms.)
ENGINE_TIMEOUT_SECONDS = 0.5
# Without an engine, look for one again this often (a scrape must not wait on a dead socket each time).
ENGINE_RETRY_SECONDS = 10.0
# Connections the client keeps: one stream per container (the stack has about a dozen) and the listing.
MAX_CONNECTIONS = 32
NANOSECONDS = 1e9
# The kernel's CFS period when a container's HostConfig names none (Docker's own default).
DEFAULT_CPU_PERIOD_MICROSECONDS = 100_000


@dataclass(frozen=True)
class ContainerFigures:
    """One reading of one lab container, as the engine sees it."""

    instance: str  # gateway-2, as the catalog names instances
    service: str
    read_at: float  # when the engine read them (seconds since the epoch)
    cpu_seconds: float  # CPU time of everything in the container since it started
    memory_bytes: float  # memory in use, page cache the kernel can take back left out (as `docker stats` shows)
    memory_limit_bytes: float | None  # None: no limit of its own
    cpu_limit_cores: float | None  # None: no limit of its own


def instance_of(labels: Mapping[str, str], project: str = PROJECT) -> str | None:
    """Return the lab instance a container holds, from its labels; None when it is not one of ``project``'s.

    A compose container is named by its service label (``gateway-2``). A Swarm task is named
    after its service without the stack's prefix (``scalelab_gateway`` -> ``gateway``), with its
    slot appended (``gateway-2``) when the catalog numbers that service's instances.
    """
    if labels.get(PROJECT_LABEL) == project:
        if labels.get(ONEOFF_LABEL) == "True":
            return None
        return labels.get(SERVICE_LABEL) or None
    return task_instance(labels, project)


def memory_usage_bytes(memory_stats: Mapping[str, Any]) -> float:
    """Return the memory a container uses as `docker stats` shows it: usage less the inactive page cache.

    The kernel may take inactive file pages back at any time, so they are no measure of what the
    container needs. Their counter is ``total_inactive_file`` on cgroup v1 hosts and
    ``inactive_file`` on cgroup v2 ones (as the Docker CLI's ``calculateMemUsageUnixNoCache``).
    """
    usage = float(memory_stats.get("usage", 0))
    counters = memory_stats.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        if key in counters and counters[key] < usage:
            return usage - counters[key]
    return usage


def cpu_limit_cores(host_config: Mapping[str, Any]) -> float | None:
    """Return the cores a container may use (``--cpus``, or ``--cpu-quota`` over its period); None when unlimited."""
    nano_cpus = host_config.get("NanoCpus") or 0
    if nano_cpus > 0:
        return nano_cpus / NANOSECONDS
    quota = host_config.get("CpuQuota") or 0
    if quota > 0:
        return quota / (host_config.get("CpuPeriod") or DEFAULT_CPU_PERIOD_MICROSECONDS)
    return None


def memory_limit_bytes(host_config: Mapping[str, Any]) -> float | None:
    """Return a container's memory limit in bytes; None when it has none (the machine's memory is then the bound)."""
    limit = host_config.get("Memory") or 0
    return float(limit) if limit > 0 else None


def figures(attrs: Mapping[str, Any], stats: Mapping[str, Any], project: str = PROJECT) -> ContainerFigures | None:
    """Return a lab container's figures from its inspect ``attrs`` and one frame of its ``stats``.

    None when it is not one of ``project``'s instances, or when the frame is empty (the engine
    sends empty frames for a container that is not running).
    """
    instance = instance_of((attrs.get("Config") or {}).get("Labels") or {}, project)
    memory = stats.get("memory_stats") or {}
    if instance is None or "usage" not in memory:
        return None
    host_config = attrs.get("HostConfig") or {}
    return ContainerFigures(
        instance=instance,
        service=catalog.service_of(instance),
        read_at=datetime.fromisoformat(stats["read"]).timestamp(),
        cpu_seconds=stats["cpu_stats"]["cpu_usage"]["total_usage"] / NANOSECONDS,
        memory_bytes=memory_usage_bytes(memory),
        memory_limit_bytes=memory_limit_bytes(host_config),
        cpu_limit_cores=cpu_limit_cores(host_config),
    )


class ContainerStatsCollector:
    """A prometheus-client collector of the lab containers' figures, as the Docker engine reads them.

    Register it with a registry; each scrape exports the latest figures of every running lab
    container::

        registry.register(ContainerStatsCollector())

    ``environ`` locates the engine as the docker CLI does (``DOCKER_HOST``; default: this
    process's environment); ``clock`` times the listing's cache and the figures' age.
    """

    def __init__(
        self,
        project: str = PROJECT,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self.project = project
        self._environ = environ
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._client: Any = None
        self._next_connect = float("-inf")
        self._said: set[str] = set()
        self._listed_at = float("-inf")
        self._list_seconds = 0.0
        self._errors = 0
        self._closed = threading.Event()
        # The containers followed, and the latest figures of each with when they came.
        self._followed: set[str] = set()
        self._latest: dict[str, tuple[ContainerFigures, float]] = {}

    def close(self) -> None:
        """Export nothing more, and stop following the containers (each follower ends at its stream's next frame)."""
        with self._lock:
            self._closed.set()
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _say_once(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            log.warning("%s", message)

    def _connect(self) -> Any:
        """Return a client of the engine, or None (said once) when no engine of API 1.41 or later answers."""
        if self._client is not None:
            return self._client
        if self._clock() < self._next_connect:
            return None
        self._next_connect = self._clock() + ENGINE_RETRY_SECONDS
        if not engine_socket_exists(self._environ):
            self._say_once("no Docker engine socket here: the containers' own figures are not exported")
            return None
        import docker
        from docker.utils import version_lt

        try:
            client = docker.from_env(
                environment=self._environ, timeout=ENGINE_TIMEOUT_SECONDS, max_pool_size=MAX_CONNECTIONS
            )
        except docker.errors.DockerException as exc:
            self._say_once(f"the Docker engine did not answer ({exc}): the containers' own figures are not exported")
            return None
        version = client.api.api_version
        if version_lt(version, MIN_API_VERSION):
            client.close()
            self._say_once(
                f"the Docker engine speaks API {version}, older than {MIN_API_VERSION} (Docker 20.10): "
                "the containers' own figures are not exported"
            )
            return None
        self._client = client
        return client

    def _list(self, client: Any) -> None:
        """List the running containers and follow each lab container not followed yet."""
        began = time.perf_counter()
        try:
            # Every running container with its labels in one call; ours are picked by label here.
            listed = client.api.containers()
        except Exception as exc:  # the engine went away or refused: count it, export what the streams have
            self._errors += 1
            self._say_once("listing the Docker engine's containers failed (counted in scalelab_container_stats_errors)")
            log.debug("listing the containers failed: %s", exc)
            return
        finally:
            self._list_seconds = time.perf_counter() - began
        for entry in listed:
            container_id = entry["Id"]
            if container_id in self._followed or not instance_of(entry.get("Labels") or {}, self.project):
                continue
            self._followed.add(container_id)
            thread = threading.Thread(
                target=self._follow, args=(client, container_id), name=f"stats-{container_id[:12]}", daemon=True
            )
            thread.start()

    def _follow(self, client: Any, container_id: str) -> None:
        """Keep the latest figures of one container until it stops, its stream fails or the collector closes."""
        from docker.errors import NotFound

        try:
            attrs = client.api.inspect_container(container_id)  # its limits: fixed while it runs
            # The session itself, not the SDK's stats(): its stream would leave the connection to the garbage collector.
            url = f"{client.api.base_url}/v{client.api.api_version}/containers/{container_id}/stats"
            with client.api.get(url, params={"stream": "1"}, stream=True, timeout=STREAM_TIMEOUT_SECONDS) as response:
                if response.status_code == 404:
                    return  # removed since it was inspected
                response.raise_for_status()
                for line in response.iter_lines():
                    if self._closed.is_set():
                        return
                    if not line:
                        continue
                    read = figures(attrs, json.loads(line), self.project)
                    if read is None:
                        return  # it stopped: the engine would send empty frames until we hang up
                    with self._lock:
                        self._latest[container_id] = (read, self._clock())
        except NotFound:
            pass  # removed since it was listed: nothing to follow
        except Exception as exc:  # a failed stream is counted; the next listing follows the container again
            if not self._closed.is_set():
                with self._lock:
                    self._errors += 1
                log.debug("following the stats of container %s failed: %s", container_id[:12], exc)
        finally:
            with self._lock:
                self._followed.discard(container_id)
                self._latest.pop(container_id, None)

    def _current(self) -> tuple[list[ContainerFigures], int, float] | None:
        """Return the fresh figures, the failed reads so far and the listing's duration; None without an engine."""
        with self._lock:
            now = self._clock()
            client = None if self._closed.is_set() else self._connect()
            if client is None:
                return None
            if now - self._listed_at >= self._cache_seconds:
                self._listed_at = now
                self._list(client)
            fresh: dict[str, ContainerFigures] = {}
            for read, received in self._latest.values():
                if now - received <= STALE_SECONDS:
                    fresh.setdefault(read.instance, read)  # two containers of one instance: export one series
            return sorted(fresh.values(), key=lambda f: f.instance), self._errors, self._list_seconds

    def read(self) -> list[ContainerFigures] | None:
        """Return the latest figures of every running lab container; None without an engine.

        A container listed for the first time has figures from its first frame on, within a second.
        """
        current = self._current()
        return None if current is None else current[0]

    def collect(self) -> Iterator[Metric]:
        """Yield the containers' CPU time, memory and limits, the failed reads and the listing's duration."""
        current = self._current()
        if current is None:
            return
        found, errors, list_seconds = current
        labels = [INSTANCE_LABEL, SERVICE_NAME_LABEL]
        cpu = CounterMetricFamily(
            "scalelab_container_cpu_seconds",
            "CPU time of everything in the container, as the Docker engine counts it.",
            labels=labels,
        )
        memory = GaugeMetricFamily(
            "scalelab_container_memory_bytes",
            "Memory the container uses, inactive page cache left out (as docker stats shows it).",
            labels=labels,
        )
        memory_limit = GaugeMetricFamily(
            "scalelab_container_memory_limit_bytes", "The container's memory limit (absent: none).", labels=labels
        )
        cpu_limit = GaugeMetricFamily(
            "scalelab_container_cpu_limit_cores", "Cores the container may use (absent: no limit).", labels=labels
        )
        for each in found:
            values = [each.instance, each.service]
            # Stamped with the engine's reading time: the engine reads once a second and Prometheus scrapes once
            # a second, so without it a rate would see the same reading twice, then two readings' worth at once.
            cpu.add_metric(values, each.cpu_seconds, timestamp=each.read_at)
            memory.add_metric(values, each.memory_bytes)
            if each.memory_limit_bytes is not None:
                memory_limit.add_metric(values, each.memory_limit_bytes)
            if each.cpu_limit_cores is not None:
                cpu_limit.add_metric(values, each.cpu_limit_cores)
        yield from (cpu, memory, memory_limit, cpu_limit)
        yield CounterMetricFamily(
            "scalelab_container_stats_errors",
            "Reads of the Docker engine that failed: a listing of the containers, or one container's stats stream.",
            value=errors,
        )
        yield GaugeMetricFamily(
            "scalelab_container_stats_list_seconds",
            "How long the last listing of the engine's containers took (a scrape waits for nothing else).",
            value=list_seconds,
        )
