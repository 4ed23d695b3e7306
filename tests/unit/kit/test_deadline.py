"""Request deadlines: the budget, the X-Request-Deadline header, and a tier that stops retrying once it is spent."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from services.kit.deadline import DEADLINE_HEADER, HOP_MARGIN_SECONDS, NO_BUDGET, Deadline
from services.kit.errors import ApiError
from services.kit.knobs import Knobs
from services.kit.settings import PoolSettings
from services.kit.tier import BalancedTier

from ..support import FakeClock, InThread

WALL = 1_700_000_000.0


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(WALL)


def test_the_budget_counts_down_and_then_refuses_further_calls(clock, wall):
    deadline = Deadline.after(2.0, clock, wall)
    assert deadline.remaining() == 2.0
    assert deadline.timeout(0.5, "the cache") == 0.5
    clock.advance(1.8)
    assert deadline.timeout(0.5, "the cache") == pytest.approx(0.2)
    assert not deadline.expired()
    clock.advance(0.2)
    assert deadline.expired() and deadline.remaining() == 0.0
    with pytest.raises(ApiError, match="ran out waiting for the database") as info:
        deadline.timeout(5.0, "the database")
    assert info.value.status == 504
    assert "GATEWAY_REQUEST_BUDGET_SECONDS" in info.value.message


def test_without_the_header_the_budget_is_the_whole_deadline(clock, wall):
    assert Deadline.from_header(None, 8.0, clock, wall).remaining() == 8.0


@pytest.mark.parametrize(("header", "remaining"), [(WALL + 3, 3.0), (WALL + 100, 8.0), (WALL - 1, 0.0), (1, 0.0)])
def test_the_header_may_shorten_the_budget_but_never_lengthen_it(clock, wall, header, remaining):
    deadline = Deadline.from_header(f" {header:.3f} ", 8.0, clock, wall)
    assert deadline.remaining() == pytest.approx(remaining)


@pytest.mark.parametrize("header", ["", "soon", "NaN", "inf", "-1", "1e400", "9" * 5000, "²", "١٢", "1.5.5", "+5"])
def test_a_header_that_is_not_epoch_seconds_is_400_naming_it(clock, wall, header):
    with pytest.raises(ApiError, match=DEADLINE_HEADER) as info:
        Deadline.from_header(header, 8.0, clock, wall)
    assert info.value.status == 400
    assert len(info.value.message) < 200


def test_the_deadline_is_passed_on_a_hop_margin_sooner(clock, wall):
    deadline = Deadline.after(2.5, clock, wall)
    clock.advance(1)
    wall.advance(1)
    assert deadline.headers() == {DEADLINE_HEADER: f"{WALL + 2.5 - HOP_MARGIN_SECONDS:.3f}"}
    # The next hop's budget is smaller than this one's: its 504 arrives while this hop still listens.
    passed_on = Deadline.from_header(deadline.headers()[DEADLINE_HEADER], 8.0, clock, wall)
    assert passed_on.remaining() == pytest.approx(1.5 - HOP_MARGIN_SECONDS)


def test_simulated_work_stops_at_the_deadline_with_a_504_naming_the_setting(clock, wall):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    deadline = Deadline.from_header(f"{WALL + 0.3:.3f}", NO_BUDGET, clock, wall, setting="the caller's deadline")
    deadline.wait(0.1, "the query", sleep)
    with pytest.raises(ApiError, match="ran out waiting for the query") as info:
        deadline.wait(1.0, "the query", sleep)
    assert info.value.status == 504 and "the caller's deadline" in info.value.message
    assert slept == [0.1, pytest.approx(0.2)]  # never past the deadline
    Deadline.from_header(None, NO_BUDGET, clock, wall).wait(60.0, "the query", sleep)  # no header: no limit
    assert slept[-1] == 60.0


# ------------------------------------------------------------------ a tier within a deadline


class SlowServer(InThread):
    """An HTTP server on 127.0.0.1 that answers GET after ``delay`` seconds and records the deadline header."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.deadlines: list[str | None] = []
        slow = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                slow.deadlines.append(self.headers.get(DEADLINE_HEADER))
                time.sleep(slow.delay)
                body = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up first

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        super().__init__(server)


@pytest.fixture
def slow_servers():
    started: list[SlowServer] = []

    def start(*delays: float) -> list[SlowServer]:
        started.extend(SlowServer(delay) for delay in delays)
        return started[-len(delays) :]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_tier(registry):
    made: list[BalancedTier] = []

    def make(servers: list[SlowServer]) -> BalancedTier:
        settings = PoolSettings(health_interval=60, upstream_timeout=10.0)
        backends = [(f"s{n}", server.url) for n, server in enumerate(servers)]
        made.append(BalancedTier("slow", backends, settings, Knobs([], registry), registry, probe=lambda b, p: None))
        return made[-1]

    yield make
    for tier in made:
        for backend in tier.pool.backends():
            tier.client(backend).close()


def test_an_attempt_waits_its_timeout_then_another_backend_is_tried(make_tier, slow_servers):
    slow, fast = slow_servers(1.0, 0.0)
    tier = make_tier([slow, fast])
    started = time.monotonic()
    backend, response = tier.request("GET", "/", deadline=Deadline.after(5.0), timeout=0.2)
    assert (backend.name, response.status) == ("s1", 200)
    assert time.monotonic() - started < 0.8


def test_retries_stop_once_the_budget_is_spent(make_tier, slow_servers):
    servers = slow_servers(1.0, 1.0, 1.0)
    tier = make_tier(servers)
    started = time.monotonic()
    with pytest.raises(ApiError, match="ran out waiting for pool 'slow'") as info:
        tier.request("GET", "/", deadline=Deadline.after(0.5), timeout=0.3)
    elapsed = time.monotonic() - started
    assert info.value.status == 504
    assert 0.45 <= elapsed < 0.9  # 0.3 s, then the 0.2 s left; the third backend never gets the request
    assert sum(len(server.deadlines) for server in servers) == 2


def test_the_last_attempt_running_out_of_budget_is_504_not_502(make_tier, slow_servers):
    tier = make_tier(slow_servers(1.0))
    with pytest.raises(ApiError) as info:
        tier.request("GET", "/", deadline=Deadline.after(0.2), timeout=5.0)
    assert info.value.status == 504


def test_a_spent_budget_sends_nothing(make_tier, slow_servers):
    (server,) = slow_servers(0.0)
    tier = make_tier([server])
    with pytest.raises(ApiError) as info:
        tier.request("GET", "/", deadline=Deadline.after(0.0))
    assert info.value.status == 504
    assert server.deadlines == []


def test_without_a_deadline_a_tier_request_is_as_before(make_tier, slow_servers):
    (server,) = slow_servers(0.0)
    _, response = make_tier([server]).request("GET", "/", headers={"X-Other": "1"})
    assert response.status == 200
    assert server.deadlines == [None]


def test_a_request_passes_the_deadline_header_on(make_tier, slow_servers):
    (server,) = slow_servers(0.0)
    deadline = Deadline.after(3.0)
    make_tier([server]).request("GET", "/", headers=deadline.headers(), deadline=deadline)
    assert float(server.deadlines[0]) == pytest.approx(time.time() + 3.0, abs=0.5)


def test_threads_waiting_on_a_slow_backend_each_stop_at_their_own_deadline(make_tier, slow_servers):
    tier = make_tier(slow_servers(2.0))
    outcomes: dict[float, float] = {}

    def call(budget: float) -> None:
        started = time.monotonic()
        with pytest.raises(ApiError):
            tier.request("GET", "/", deadline=Deadline.after(budget))
        outcomes[budget] = time.monotonic() - started

    threads = [threading.Thread(target=call, args=(budget,)) for budget in (0.1, 0.4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert outcomes[0.1] < 0.35 and 0.35 <= outcomes[0.4] < 0.8
