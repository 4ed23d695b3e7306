"""The retry budget and the backoff between attempts."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry

from services.kit.retrybudget import MAX_BACKOFF_SECONDS, MAX_SAVED_RETRIES, RetryBudget, backoff_seconds
from tests.unit.support import FakeClock


def test_the_backoff_doubles_per_retry_with_full_jitter_and_a_cap():
    rng = random.Random(3)
    waits = {attempt: [backoff_seconds(attempt, 0.01, rng) for _ in range(500)] for attempt in (1, 2, 3, 12)}
    assert all(0 <= wait <= 0.01 for wait in waits[1])
    assert 0.015 < max(waits[2]) <= 0.02 and 0.03 < max(waits[3]) <= 0.04
    assert max(waits[12]) <= MAX_BACKOFF_SECONDS
    assert min(waits[3]) < 0.005  # jitter: some retries go almost at once, so they do not all arrive together
    assert backoff_seconds(1, 0) == backoff_seconds(0, 0.01) == 0


def test_in_an_outage_retries_are_capped_at_the_ratio_of_requests():
    clock = FakeClock()
    registry = CollectorRegistry()
    budget = RetryBudget(0.2, registry, clock=clock)
    for _ in range(int(MAX_SAVED_RETRIES)):  # what it saved up while all was well
        assert budget.allow()
    allowed = 0
    for _ in range(1000):  # 1,000 failing requests within one instant: each would like a retry
        budget.sent()
        allowed += budget.allow()
    assert 195 <= allowed <= 200
    assert registry.get_sample_value("scalelab_retries_refused_total") == 1000 - allowed


def test_a_quiet_tier_still_gets_its_floor_of_retries_a_second():
    clock = FakeClock()
    budget = RetryBudget(0.0, None, clock=clock)
    while budget.allow():
        pass
    clock.now += 1
    assert [budget.allow() for _ in range(6)] == [True] * 5 + [False]
