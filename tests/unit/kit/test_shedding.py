"""Rate limiting and load shedding: token buckets per client, fixed and adaptive concurrency limits."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.kit.errors import ApiError
from services.kit.shedding import ADAPTIVE, FIXED, OFF, AdaptiveLimit, Shedder, TokenBuckets
from tests.unit.support import FakeClock


def test_a_client_may_burst_then_gets_its_rate_and_waits_for_the_next_token():
    clock = FakeClock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)


def test_each_client_has_its_own_bucket():
    buckets = TokenBuckets(rate=1, burst=1, clock=FakeClock())
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    assert buckets.take("b") == 0


def test_an_idle_client_never_holds_more_than_its_burst():
    clock = FakeClock()
    buckets = TokenBuckets(rate=10, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 30
    assert [buckets.take("a") == 0 for _ in range(3)] == [True, True, False]


def shedder(mode: str = OFF, limit: int = 2, rate: float = 0, burst: float = 1, clock=None) -> Shedder:
    return Shedder("gateway-9", mode, limit, rate, burst, CollectorRegistry(), clock=clock or FakeClock())


def test_off_admits_everything():
    admission = shedder()
    tickets = [admission.admit("a") for _ in range(50)]
    assert admission.state()["in_flight"] == 50 and admission.limit() == 0
    for ticket in tickets:
        admission.done(ticket, 200)
    assert admission.state()["in_flight"] == 0


def test_a_fixed_limit_refuses_the_excess_with_503_and_retry_after_until_a_slot_is_free():
    admission = shedder(FIXED, limit=2)
    first, _ = admission.admit("a"), admission.admit("b")
    with pytest.raises(ApiError) as refused:
        admission.admit("c")
    assert refused.value.status == 503
    assert refused.value.headers["Retry-After"] == "1"
    assert "gateway-9" in str(refused.value) and "max_in_flight" in str(refused.value)
    admission.done(first, 200)
    admission.admit("c")
    assert admission.state()["shed"] == 1


def test_the_client_rate_limit_is_429_with_the_seconds_until_a_token():
    clock = FakeClock()
    admission = shedder(rate=0.25, burst=1, clock=clock)
    admission.done(admission.admit("a"), 200)
    with pytest.raises(ApiError) as refused:
        admission.admit("a")
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == "4"
    assert "client_rate_limit" in str(refused.value)
    admission.admit("b")  # another client is not held back


def test_knobs_change_the_limits_at_runtime():
    admission = shedder(FIXED, limit=1)
    admission.admit("a")
    with pytest.raises(ApiError):
        admission.admit("b")
    admission.configure(max_in_flight=2)
    admission.admit("b")
    admission.configure(mode=OFF)
    admission.admit("c")
    admission.configure(client_rate=1, client_burst=1)
    admission.admit("d")
    with pytest.raises(ApiError):
        admission.admit("d")


def test_the_counters_say_how_many_were_admitted_and_why_the_others_were_shed():
    registry = CollectorRegistry()
    admission = Shedder("gateway-1", FIXED, 1, 0.5, 1, registry, clock=FakeClock())
    admission.admit("a")
    for client in ("a", "b"):
        with pytest.raises(ApiError):
            admission.admit(client)
    assert registry.get_sample_value("scalelab_admitted_total") == 1
    assert registry.get_sample_value("scalelab_shed_total", {"reason": "client_rate"}) == 1
    assert registry.get_sample_value("scalelab_shed_total", {"reason": "concurrency"}) == 1
    assert registry.get_sample_value("scalelab_concurrency_limit") == 1


def drive(limit: AdaptiveLimit, rtt_of_in_flight, rounds: int = 400) -> float:
    """Feed the limit the latency a station with queueing gives at full use of the limit."""
    now = 0.0
    for _ in range(rounds):
        in_flight = int(limit.limit)
        rtt = rtt_of_in_flight(in_flight)
        limit.sample(now, now + rtt, in_flight, failed=False)
        now += rtt
    return limit.limit


def test_the_adaptive_limit_falls_to_where_requests_hardly_queue():
    # Three servers of 100 ms: up to 3 in flight no wait, then each one more adds a third of a service time.
    limit = AdaptiveLimit(ceiling=64, now=0)
    settled = drive(limit, lambda n: 0.1 * max(1.0, n / 3))
    assert 3 <= settled <= 12


def test_the_adaptive_limit_grows_to_its_ceiling_while_latency_stays_flat():
    limit = AdaptiveLimit(ceiling=40, now=0)
    assert drive(limit, lambda n: 0.1) == 40


def test_failures_below_shrink_the_adaptive_limit():
    limit = AdaptiveLimit(ceiling=20, now=0)
    drive(limit, lambda n: 0.1, rounds=10)
    assert limit.limit == 20
    for _ in range(10):
        limit.sample(0, 0.1, 20, failed=True)
    assert limit.limit < 10


def test_an_adaptive_shedder_learns_from_finished_requests():
    clock = FakeClock()
    admission = shedder(ADAPTIVE, limit=32, clock=clock)
    assert admission.limit() == 4  # it starts small, where nothing queues, and learns the no-load latency
    for _ in range(200):  # three servers of 100 ms behind it
        tickets = [admission.admit(str(n)) for n in range(admission.limit())]
        clock.now += 0.1 * max(1.0, len(tickets) / 3)
        for ticket in tickets:
            admission.done(ticket, 200)
    assert admission.limit() < 12
    with pytest.raises(ApiError):
        [admission.admit(str(n)) for n in range(admission.limit() + 1)]
