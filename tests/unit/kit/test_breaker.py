"""Circuit breakers: a backend that keeps failing is skipped, tried again after a cool-down, and closed by a success."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.kit.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerPolicy
from services.kit.pool import NoHealthyBackend, Pool

BACKENDS = [("a", "http://127.0.0.1:1"), ("b", "http://127.0.0.1:2")]


def test_a_breaker_opens_after_the_failures_in_a_row_and_a_success_resets_the_count():
    breaker = Breaker(BreakerPolicy(failures=3, cooldown=5))
    for ok in (False, False, True, False, False):
        breaker.record(ok, 0)
    assert breaker.state == CLOSED
    assert breaker.record(False, 0) is True
    assert breaker.state == OPEN and not breaker.allows(4.9)


def test_after_the_cool_down_one_trial_goes_through_and_decides():
    breaker = Breaker(BreakerPolicy(failures=1, cooldown=5))
    breaker.record(False, 0)
    assert breaker.allows(5.0) and breaker.state == HALF_OPEN
    breaker.picked()
    assert not breaker.allows(5.1)  # one trial at a time
    breaker.record(False, 5.2)  # the trial failed: open for another cool-down
    assert breaker.state == OPEN and not breaker.allows(10.1) and breaker.allows(10.2)
    breaker.picked()
    breaker.record(True, 10.3)
    assert breaker.state == CLOSED and breaker.allows(10.3)


def test_a_breaker_with_no_threshold_never_opens():
    breaker = Breaker(BreakerPolicy(failures=0))
    for _ in range(100):
        breaker.record(False, 0)
    assert breaker.state == CLOSED


def _pool(clock) -> Pool:
    pool = Pool("test", BACKENDS, clock=clock, registry=CollectorRegistry())
    pool.set_breaker(failures=2, cooldown=5)
    return pool


def _fail(pool: Pool, name: str, status: int | str = 500) -> None:
    backend = pool.get(name)
    pool.begin(backend)
    pool.end(backend, status)


def test_the_pool_skips_a_backend_whose_breaker_is_open(clock):
    pool = _pool(clock)
    _fail(pool, "a")
    _fail(pool, "a", "timeout")  # no answer counts too
    assert {pool.choose().name for _ in range(10)} == {"b"}
    assert {b["name"]: b["breaker"] for b in pool.snapshot()["backends"]} == {"a": "open", "b": "closed"}


def test_4xx_answers_are_the_clients_fault_and_never_open_a_breaker(clock):
    pool = _pool(clock)
    for _ in range(5):
        _fail(pool, "a", 404)
    assert pool.get("a").breaker.state == CLOSED


def test_an_open_backend_gets_one_trial_after_the_cool_down_and_is_back_when_it_succeeds(clock):
    pool = _pool(clock)
    _fail(pool, "a")
    _fail(pool, "a")
    clock.advance(5)
    picks = [pool.choose().name for _ in range(6)]
    assert picks.count("a") == 1  # the trial; the others go to b while it is out
    backend = pool.get("a")
    pool.begin(backend)
    pool.end(backend, 200)
    assert {pool.choose().name for _ in range(10)} == {"a", "b"}


def test_every_breaker_open_means_no_backend_for_the_request(clock):
    pool = _pool(clock)
    for name in ("a", "b"):
        _fail(pool, name)
        _fail(pool, name)
    try:
        pool.choose()
    except NoHealthyBackend as exc:
        assert "no healthy backend" in str(exc)
    else:
        raise AssertionError("a pool whose breakers are all open chose a backend")


def test_switching_breakers_off_closes_the_open_ones(clock):
    pool = _pool(clock)
    _fail(pool, "a")
    _fail(pool, "a")
    pool.set_breaker(failures=0)
    assert pool.get("a").breaker.state == CLOSED
    assert {pool.choose().name for _ in range(10)} == {"a", "b"}


def test_breaker_states_and_changes_are_exported(clock):
    registry = CollectorRegistry()
    pool = Pool("test", BACKENDS, clock=clock, registry=registry)
    pool.set_breaker(failures=1)
    _fail(pool, "a")
    text = generate_latest(registry).decode()
    assert 'scalelab_backend_breaker_state{backend="a",pool="test",state="open"} 1.0' in text
    assert 'scalelab_backend_breaker_transitions_total{backend="a",pool="test",to="open"} 1.0' in text
