"""Health checking: the hysteresis state machine, one-off checks with a given probe, the probe loop."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time

import pytest

from services.kit.health import HealthChecker, HealthPolicy, HealthState, http_probe
from services.kit.httpclient import UpstreamError
from services.kit.pool import Failure, NoHealthyBackend, Pool

from ..support import InThread, wait_for

# ------------------------------------------------------------------ HealthState


def test_state_goes_down_only_after_fall_failures_in_a_row():
    state = HealthState(rise=2, fall=3)
    assert state.record(False) is False
    assert state.record(False) is False
    assert state.healthy
    assert state.record(False) is True
    assert not state.healthy
    assert state.record(False) is False  # already down: no second transition


def test_a_success_resets_the_failure_streak():
    state = HealthState(rise=2, fall=2)
    for ok in (False, True, False, True, False):
        state.record(ok)
    assert state.healthy


def test_state_comes_back_only_after_rise_successes_in_a_row():
    state = HealthState(rise=3, fall=1, healthy=False)
    assert state.record(True) is False
    assert state.record(True) is False
    assert state.record(False) is False  # streak broken
    assert state.record(True) is False
    assert state.record(True) is False
    assert not state.healthy
    assert state.record(True) is True
    assert state.healthy


def test_force_down_takes_it_down_at_once_and_reports_the_change_once():
    state = HealthState(rise=2, fall=5)
    assert state.force_down() is True
    assert not state.healthy
    assert state.force_down() is False
    # it needs the full rise to come back
    assert state.record(True) is False
    assert state.record(True) is True
    assert state.healthy


def test_force_down_resets_a_success_streak():
    state = HealthState(rise=2, fall=2, healthy=False)
    state.record(True)
    state.force_down()
    assert state.record(True) is False
    assert not state.healthy


@pytest.mark.parametrize(("rise", "fall"), [(0, 1), (1, 0), (-1, 2)])
def test_rise_and_fall_must_be_positive(rise, fall):
    with pytest.raises(ValueError, match="at least 1"):
        HealthState(rise=rise, fall=fall)


# ------------------------------------------------------------------ HealthPolicy


def test_detection_bound_is_fall_times_interval_plus_timeout():
    assert HealthPolicy(interval=1.0, timeout=0.5, fall=3).detection_bound() == pytest.approx(4.5)


def test_default_policy_detects_a_dead_backend_in_about_a_second():
    assert HealthPolicy().detection_bound() == pytest.approx(1.1)


# ------------------------------------------------------------------ HealthChecker.check_once


class SwitchableProbe:
    """A probe that passes or fails as the test says, and counts its calls."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self, backend, policy) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def one_backend_pool(policy: HealthPolicy) -> Pool:
    return Pool("p", [("a", "http://127.0.0.1:9001")], policy=policy)


def test_check_once_reports_a_passing_probe():
    policy = HealthPolicy(fall=2, rise=2)
    pool = one_backend_pool(policy)
    probe = SwitchableProbe()
    checker = HealthChecker(pool, policy, probe)
    backend = pool.get("a")

    assert checker.check_once(backend) is True
    assert probe.calls == 1
    assert backend.last_check_ok is True
    assert backend.last_check_latency is not None and backend.last_check_latency >= 0
    assert backend.healthy


def test_check_once_flips_down_after_fall_failures_and_back_after_rise():
    policy = HealthPolicy(fall=2, rise=3)
    pool = one_backend_pool(policy)
    probe = SwitchableProbe()
    checker = HealthChecker(pool, policy, probe)
    backend = pool.get("a")

    probe.error = ConnectionRefusedError("connection refused")
    assert checker.check_once(backend) is False
    assert backend.healthy
    assert pool.choose() is backend
    assert checker.check_once(backend) is False
    assert not backend.healthy
    assert backend.last_check_ok is False
    assert backend.last_error == "connection refused"
    with pytest.raises(NoHealthyBackend):
        pool.choose()

    probe.error = None
    assert checker.check_once(backend) is True
    assert checker.check_once(backend) is True
    assert not backend.healthy
    assert checker.check_once(backend) is True
    assert backend.healthy
    assert pool.choose() is backend


def test_a_probe_failing_without_a_message_is_reported_by_its_type():
    policy = HealthPolicy()
    pool = one_backend_pool(policy)
    probe = SwitchableProbe()
    probe.error = TimeoutError()
    HealthChecker(pool, policy, probe).check_once(pool.get("a"))
    assert pool.get("a").last_error == "TimeoutError"


# ------------------------------------------------------------------ the probe loop


def test_started_checker_takes_a_failing_backend_down_and_stops_when_asked():
    policy = HealthPolicy(interval=0.01, timeout=0.01, fall=2, rise=2)
    pool = one_backend_pool(policy)
    probe = SwitchableProbe()
    probe.error = ConnectionRefusedError("refused")
    checker = HealthChecker(pool, policy, probe)
    checker.start()
    try:
        wait_for(lambda: not pool.get("a").healthy, what="the backend to go down")
        probe.error = None
        wait_for(lambda: pool.get("a").healthy, what="the backend to come back")
    finally:
        checker.stop()
    assert probe.calls >= 4


def test_watch_starts_one_probe_thread_per_backend():
    policy = HealthPolicy(interval=60, timeout=0.01)
    pool = Pool("p", [("watched-once", "http://127.0.0.1:9001")], policy=policy)
    checker = HealthChecker(pool, policy, SwitchableProbe())
    try:
        checker.watch(pool.get("watched-once"))
        checker.watch(pool.get("watched-once"))
        checker.start()
        threads = [thread for thread in threading.enumerate() if thread.name == "health-watched-once"]
        assert len(threads) == 1
    finally:
        checker.stop()


# ------------------------------------------------------------------ http_probe against a real server


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        self.send_response(self.status if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    served = InThread(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health))
    yield served.server
    served.stop()


def test_http_probe_passes_on_200_and_fails_otherwise(health_server):
    url = f"http://127.0.0.1:{health_server.server_address[1]}"
    pool = Pool("p", [("a", url)])
    http_probe(pool.get("a"), HealthPolicy(timeout=2))
    with pytest.raises(ConnectionError, match="answered 404"):
        http_probe(pool.get("a"), HealthPolicy(timeout=2, path="/nope"))


def test_http_probe_fails_when_nothing_listens():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pool = Pool("p", [("a", f"http://127.0.0.1:{port}")])
    with pytest.raises(UpstreamError, match="refused") as info:
        http_probe(pool.get("a"), HealthPolicy(timeout=2))
    assert info.value.failure is Failure.CONNECT


class _CountingServer(http.server.ThreadingHTTPServer):
    """Counts the connections it accepts; ``kill`` closes them all, as a killed process's sockets are."""

    def __init__(self, *args):
        super().__init__(*args)
        self.accepted: list[socket.socket] = []

    def process_request(self, request, client_address):
        self.accepted.append(request)
        super().process_request(request, client_address)

    def kill(self):
        for sock in self.accepted:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _KeepAliveHealth(_Health):
    protocol_version = "HTTP/1.1"


def test_http_probe_keeps_one_connection_and_a_stopped_server_fails_the_next_probe_at_once():
    server = _CountingServer(("127.0.0.1", 0), _KeepAliveHealth)
    served = InThread(server)
    pool = Pool("p", [("a", f"http://127.0.0.1:{server.server_address[1]}")])
    try:
        for _ in range(5):
            http_probe(pool.get("a"), HealthPolicy(timeout=2))
        assert len(server.accepted) == 1
    finally:
        served.stop()
        server.kill()
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        http_probe(pool.get("a"), HealthPolicy(timeout=2))
    assert time.monotonic() - started < 0.5


def _health_threads(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == f"health-{name}" and thread.is_alive()]


def test_a_removed_backend_is_no_longer_probed_and_its_name_can_be_watched_again():
    policy = HealthPolicy(interval=0.01, timeout=0.01)
    pool = Pool("p", [("keep", "http://127.0.0.1:9001"), ("gone", "http://127.0.0.1:9002")], policy=policy)
    probed: list[str] = []
    checker = HealthChecker(pool, policy, lambda backend, _policy: probed.append(backend.name))
    checker.start()
    try:
        wait_for(lambda: "gone" in probed, what="a first probe of the backend")
        pool.remove("gone")
        wait_for(lambda: not _health_threads("gone"), what="the removed backend's probe thread to end")
        count, kept = probed.count("gone"), probed.count("keep")
        wait_for(lambda: probed.count("keep") >= kept + 5, what="more probes of the other backend")
        assert probed.count("gone") == count
        # Added again under the same name (an instance removed, then one added): probed again.
        checker.watch(pool.add("gone", "http://127.0.0.1:9003"))
        wait_for(lambda: probed.count("gone") > count, what="the re-added backend to be probed")
        assert len(_health_threads("gone")) == 1
    finally:
        checker.stop()
