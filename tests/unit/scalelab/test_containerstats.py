"""The Docker engine's figures of the lab containers: arithmetic, names, and the collector over the engine's API.

``data/docker_engine.json`` is what a real engine answered (Docker 20.10.24, API 1.41, a cgroup v1
host), recorded with the docker SDK from containers started for the purpose::

    docker run -d --name statscheck-gateway-2 --cpus 0.5 --memory 256m \\
        --label com.docker.compose.project=statscheck --label com.docker.compose.service=gateway-2 \\
        python:3.12-slim python -c '<hold 60 MiB, write 30 MiB to a file, spin half the time>'
    docker run -d --name statscheck-loadgen \\
        --label com.docker.compose.project=statscheck --label com.docker.compose.service=loadgen \\
        python:3.12-slim python -c 'import time; time.sleep(100000)'
    docker run -d --name statscheck-stopped ... python:3.12-slim true

``containers_json`` is ``client.api.containers()`` (filtered to those two), ``inspect`` is
``client.api.inspect_container(id)`` (the SDK's ``container.attrs``), ``stats_stream`` two
frames of ``GET /containers/<id>/stats?stream=1``, ``one_shot`` an earlier
``container.stats(stream=False, one_shot=True)`` of gateway-2 while its file was still in the page
cache, ``stopped_container_frame`` the first frame of the stopped container's stream, and each
``docker_stats_mem_usage`` what ``docker stats --no-stream`` printed right after.

The collector's own tests run the real docker SDK against a stand-in engine: an HTTP server on
127.0.0.1 that answers with those recordings, streaming the stats as the engine does.
"""

from __future__ import annotations

import copy
import http.server
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString

from scalelab import catalog
from scalelab.containerstats import (
    CACHE_SECONDS,
    STALE_SECONDS,
    ContainerStatsCollector,
    cpu_limit_cores,
    figures,
    instance_of,
    memory_limit_bytes,
    memory_usage_bytes,
)
from tests.unit.standins import closed_port
from tests.unit.support import FakeClock, InThread, wait_for

RECORDED = json.loads((Path(__file__).parent / "data" / "docker_engine.json").read_text())
PROJECT = "statscheck"  # the recording's compose project
CONTAINERS: dict[str, dict[str, Any]] = RECORDED["containers"]
GATEWAY, LOADGEN = (
    next(cid for cid, c in CONTAINERS.items() if c["inspect"]["Name"] == f"/statscheck-{name}")
    for name in ("gateway-2", "loadgen")
)
MIB = 2**20


def _docker_stats_mib(text: str) -> float:
    """Return the usage `docker stats` printed (``69.18MiB / 256MiB``) in MiB."""
    number, unit = re.match(r"([\d.]+)(MiB|GiB)", text).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "GiB" else 1)


# ------------------------------------------------------------------ arithmetic, on the recorded answers


def test_memory_is_what_docker_stats_shows_usage_less_the_inactive_page_cache():
    for record in [*CONTAINERS.values(), RECORDED["one_shot"]]:
        frames = record.get("stats_stream") or [record["stats"]]
        used = memory_usage_bytes(frames[-1]["memory_stats"])
        assert used / MIB == pytest.approx(_docker_stats_mib(record["docker_stats_mem_usage"]), abs=0.005)


def test_on_cgroup_v1_the_inactive_file_pages_are_left_out_not_the_whole_cache():
    memory = RECORDED["one_shot"]["stats"]["memory_stats"]  # 30 MiB just written to a file in the container
    counters = memory["stats"]
    assert counters["cache"] > counters["total_inactive_file"] > 0  # the two older formulas differ here
    assert memory_usage_bytes(memory) == memory["usage"] - counters["total_inactive_file"]


def test_on_cgroup_v2_inactive_file_is_the_counter_left_out():
    # A cgroup v2 host reports no total_* (and no cache) counters: the same reading with them removed.
    memory = copy.deepcopy(RECORDED["one_shot"]["stats"]["memory_stats"])
    memory["stats"] = {key: value for key, value in memory["stats"].items() if not key.startswith("total_")}
    del memory["stats"]["cache"]
    memory["stats"]["inactive_file"] = 5 * MIB
    assert memory_usage_bytes(memory) == memory["usage"] - 5 * MIB


def test_a_counter_larger_than_the_usage_is_not_subtracted():
    assert memory_usage_bytes({"usage": 100, "stats": {"total_inactive_file": 200, "inactive_file": 300}}) == 100
    assert memory_usage_bytes({"usage": 100}) == 100


def test_limits_come_from_the_host_config_and_are_absent_when_unlimited():
    limited = CONTAINERS[GATEWAY]["inspect"]["HostConfig"]  # --cpus 0.5 --memory 256m
    assert cpu_limit_cores(limited) == 0.5
    assert memory_limit_bytes(limited) == 256 * MIB
    unlimited = CONTAINERS[LOADGEN]["inspect"]["HostConfig"]
    assert (cpu_limit_cores(unlimited), memory_limit_bytes(unlimited)) == (None, None)
    # --cpu-quota 150000 --cpu-period 100000, the older way to say 1.5 cores, and the default period.
    assert cpu_limit_cores({"NanoCpus": 0, "CpuQuota": 150_000, "CpuPeriod": 100_000}) == 1.5
    assert cpu_limit_cores({"NanoCpus": 0, "CpuQuota": 50_000, "CpuPeriod": 0}) == 0.5


def test_figures_of_a_recorded_frame():
    record = CONTAINERS[GATEWAY]
    frame = record["stats_stream"][-1]
    found = figures(record["inspect"], frame, PROJECT)
    assert found is not None
    assert (found.instance, found.service) == ("gateway-2", "gateway")
    assert found.cpu_seconds == frame["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9
    assert found.memory_bytes == memory_usage_bytes(frame["memory_stats"])
    assert (found.cpu_limit_cores, found.memory_limit_bytes) == (0.5, 256 * MIB)
    assert found.read_at == pytest.approx(1_796_236_279.396540, abs=1e-6)  # 2026-12-02T18:31:19.396540872Z


def test_no_figures_from_the_empty_frame_of_a_stopped_container_or_from_another_project():
    record = CONTAINERS[GATEWAY]
    assert figures(record["inspect"], RECORDED["stopped_container_frame"], PROJECT) is None
    assert figures(record["inspect"], record["stats_stream"][-1], "scalelab") is None


# ------------------------------------------------------------------ names


def _compose(service: str, project: str = "scalelab", **extra: str) -> dict[str, str]:
    return {"com.docker.compose.project": project, "com.docker.compose.service": service, **extra}


def _swarm(service: str, slot: int, stack: str = "scalelab") -> dict[str, str]:
    # The labels Docker Swarm puts on a stack's task containers.
    return {
        "com.docker.stack.namespace": stack,
        "com.docker.swarm.service.name": f"{stack}_{service}",
        "com.docker.swarm.task.name": f"{stack}_{service}.{slot}.w6fz0kcm8zd9mb3dpyu1l0q1n",
    }


def test_a_compose_container_is_named_by_its_service_label():
    recorded = {entry["Labels"]["com.docker.compose.service"] for entry in RECORDED["containers_json"]}
    assert {instance_of(entry["Labels"], PROJECT) for entry in RECORDED["containers_json"]} == recorded
    assert instance_of(_compose("microservice-4")) == "microservice-4"  # one added by `scalelab add`
    assert instance_of(_compose("gateway-1", project="other")) is None
    assert instance_of(_compose("gateway-1", **{"com.docker.compose.oneoff": "True"})) is None
    assert instance_of({}) is None


def test_a_swarm_task_is_named_by_its_service_and_slot_when_the_catalog_numbers_that_service():
    for svc in catalog.SERVICES:
        numbered = catalog.instance_names(svc)[0] != svc.name
        assert instance_of(_swarm(svc.name, 2)) == (f"{svc.name}-2" if numbered else svc.name), svc.name
    assert instance_of(_swarm("gateway", 2, stack="other")) is None
    assert instance_of(_swarm("not-in-the-catalog", 1)) is None  # not the lab's: nothing to name it by


# ------------------------------------------------------------------ the collector, over the engine's API


class StandInEngine(InThread):
    """An HTTP server answering the Docker engine API's few routes the collector uses, with recorded answers.

    Each stats stream sends the recorded frames, then stays open until the container is stopped
    (then it sends the recorded empty frame, as the engine does) or the server closes.
    """

    def __init__(self, api_version: str = RECORDED["engine"]["ApiVersion"]) -> None:
        self.api_version = api_version
        self.running = dict(CONTAINERS)  # id -> recording
        self.failing: set[str] = set()  # ids whose stats the engine refuses
        self.refuse_listing = False
        self.stopped: dict[str, threading.Event] = {cid: threading.Event() for cid in CONTAINERS}
        self.closing = threading.Event()
        self.requests: list[str] = []
        engine = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                engine.requests.append(path)
                prefix = f"/v{engine.api_version}"
                if path == "/version":
                    return self._json({"ApiVersion": engine.api_version, "Version": RECORDED["engine"]["Version"]})
                if path == f"{prefix}/containers/json" and engine.refuse_listing:
                    return self._json({"message": "daemon busy"}, 500)
                if path == f"{prefix}/containers/json":
                    return self._json([e for e in RECORDED["containers_json"] if e["Id"] in engine.running])
                match = re.fullmatch(rf"{re.escape(prefix)}/containers/(\w+)/(json|stats)", path)
                if not match or match[1] not in engine.running:
                    return self._json({"message": "No such container"}, 404)
                if match[2] == "json":
                    return self._json(engine.running[match[1]]["inspect"])
                if match[1] in engine.failing:
                    return self._json({"message": "cgroup read failed"}, 500)
                return self._stream(match[1])

            def _json(self, payload: Any, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _stream(self, container_id: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for frame in engine.running[container_id]["stats_stream"]:
                        self._chunk(json.dumps(frame).encode() + b"\n")
                    stopped = engine.stopped[container_id]
                    while not (stopped.is_set() or engine.closing.is_set()):
                        stopped.wait(0.02)
                    if stopped.is_set():
                        self._chunk(json.dumps(RECORDED["stopped_container_frame"]).encode() + b"\n")
                    self._chunk(b"")
                except OSError:
                    pass  # the collector hung up

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        super().__init__(server)

    @property
    def environ(self) -> dict[str, str]:
        """Return the environment that points the docker SDK here."""
        return {"DOCKER_HOST": f"tcp://127.0.0.1:{self.port}"}

    def stop_container(self, container_id: str) -> None:
        """Stop a container: its stream sends an empty frame and it is no longer listed."""
        del self.running[container_id]
        self.stopped[container_id].set()

    def stop(self) -> None:
        self.closing.set()
        super().stop()


@pytest.fixture
def engine() -> Iterator[StandInEngine]:
    """A stand-in Docker engine holding the two recorded containers."""
    server = StandInEngine()
    yield server
    server.stop()


@pytest.fixture
def collector(engine: StandInEngine, clock: FakeClock) -> Iterator[ContainerStatsCollector]:
    """A collector of the recording's project, on the stand-in engine, timed by a clock the test moves."""
    made = ContainerStatsCollector(project=PROJECT, environ=engine.environ, clock=clock)
    yield made
    made.close()


def _scrape(collector: ContainerStatsCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def _both_read(collector: ContainerStatsCollector) -> list:
    found = collector.read() or []
    return found if len(found) == 2 else []


def test_each_container_is_exported_under_its_instance_and_service(collector: ContainerStatsCollector):
    assert "scalelab_container_memory_bytes{" not in _scrape(collector)  # listed now; their first frames follow
    wait_for(lambda: _both_read(collector), what="a frame of each recorded container")
    text = _scrape(collector)
    gateway = figures(CONTAINERS[GATEWAY]["inspect"], CONTAINERS[GATEWAY]["stats_stream"][-1], PROJECT)
    assert gateway is not None
    labels = 'container_instance="gateway-2",container_service="gateway"'
    # The CPU counter carries the engine's reading time (in ms): rates use when the engine read it.
    cpu = f"scalelab_container_cpu_seconds_total{{{labels}}} {floatToGoString(gateway.cpu_seconds)}"
    assert f"{cpu} {int(gateway.read_at * 1000)}\n" in text
    assert f"scalelab_container_memory_bytes{{{labels}}} {floatToGoString(gateway.memory_bytes)}\n" in text
    assert f"scalelab_container_cpu_limit_cores{{{labels}}} 0.5\n" in text
    assert f"scalelab_container_memory_limit_bytes{{{labels}}} {floatToGoString(256 * MIB)}\n" in text
    loadgen = 'container_instance="loadgen",container_service="loadgen"'
    assert f"scalelab_container_memory_bytes{{{loadgen}}}" in text
    assert f"scalelab_container_cpu_limit_cores{{{loadgen}}}" not in text  # no limits of its own
    assert f"scalelab_container_memory_limit_bytes{{{loadgen}}}" not in text
    assert "scalelab_container_stats_errors_total 0.0" in text
    assert re.search(r"^scalelab_container_stats_list_seconds \d", text, re.M)


def test_scrapes_close_together_share_one_listing_and_each_stream_is_opened_once(
    collector: ContainerStatsCollector, engine: StandInEngine, clock: FakeClock
):
    wait_for(lambda: _both_read(collector), what="a frame of each recorded container")
    listings = engine.requests.count("/v1.41/containers/json")
    for _ in range(3):
        _scrape(collector)
    assert engine.requests.count("/v1.41/containers/json") == listings
    clock.advance(CACHE_SECONDS)
    _scrape(collector)
    assert engine.requests.count("/v1.41/containers/json") == listings + 1
    streams = [path for path in engine.requests if path.endswith("/stats")]
    assert len(streams) == len(set(streams)) == 2


def test_a_stopped_container_leaves_the_export(collector: ContainerStatsCollector, engine: StandInEngine):
    wait_for(lambda: _both_read(collector), what="a frame of each recorded container")
    engine.stop_container(LOADGEN)
    wait_for(lambda: [f.instance for f in collector.read() or []] == ["gateway-2"], what="loadgen to leave")
    assert 'container_instance="loadgen"' not in _scrape(collector)
    assert "scalelab_container_stats_errors_total 0.0" in _scrape(collector)  # stopping is no failure


def test_figures_of_a_stalled_stream_are_not_exported(collector: ContainerStatsCollector, clock: FakeClock):
    wait_for(lambda: _both_read(collector), what="a frame of each recorded container")
    clock.advance(STALE_SECONDS + 0.1)  # the stand-in sends no frame after the recorded ones
    assert collector.read() == []


def test_a_failed_stream_is_counted_and_the_others_are_still_exported(
    collector: ContainerStatsCollector, engine: StandInEngine
):
    engine.failing.add(LOADGEN)
    collector.read()
    wait_for(lambda: "scalelab_container_stats_errors_total 1.0" in _scrape(collector), what="the failure counted")
    wait_for(lambda: [f.instance for f in collector.read() or []] == ["gateway-2"], what="gateway-2's frame")


def test_a_failed_listing_is_counted_and_said_once(
    collector: ContainerStatsCollector, engine: StandInEngine, clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    engine.refuse_listing = True
    with caplog.at_level(logging.WARNING, logger="scalelab.containerstats"):
        _scrape(collector)
        clock.advance(CACHE_SECONDS)
        text = _scrape(collector)
    assert "scalelab_container_stats_errors_total 2.0" in text
    assert "scalelab_container_memory_bytes{" not in text
    assert len(caplog.records) == 1 and "listing" in caplog.records[0].getMessage()


def test_without_an_engine_nothing_is_exported_and_that_is_said_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    for environ in (
        {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        {"DOCKER_HOST": f"tcp://127.0.0.1:{closed_port()}"},
    ):
        caplog.clear()
        collector = ContainerStatsCollector(environ=environ, clock=clock)
        with caplog.at_level(logging.WARNING, logger="scalelab.containerstats"):
            assert list(collector.collect()) == []
            clock.advance(60)  # long enough to look for the engine again
            assert list(collector.collect()) == []
        assert len(caplog.records) == 1, environ
        assert "not exported" in caplog.records[0].getMessage()
        collector.close()


def test_an_engine_older_than_api_1_41_is_not_read(clock: FakeClock, caplog: pytest.LogCaptureFixture):
    engine = StandInEngine(api_version="1.40")
    try:
        collector = ContainerStatsCollector(project=PROJECT, environ=engine.environ, clock=clock)
        with caplog.at_level(logging.WARNING, logger="scalelab.containerstats"):
            assert list(collector.collect()) == []
        assert "API 1.40" in caplog.text
        assert not any(path.endswith("/containers/json") for path in engine.requests)
        collector.close()
    finally:
        engine.stop()


def test_a_closed_collector_exports_nothing_and_its_followers_end_with_their_streams(
    collector: ContainerStatsCollector, engine: StandInEngine
):
    wait_for(lambda: _both_read(collector), what="a frame of each recorded container")
    collector.close()
    assert list(collector.collect()) == []
    engine.closing.set()  # the engine ends its streams (as it sends a frame a second, which the followers stop at)
    followers = {f"stats-{container_id[:12]}" for container_id in CONTAINERS}
    wait_for(lambda: not followers & {t.name for t in threading.enumerate()}, what="the followers to end")
