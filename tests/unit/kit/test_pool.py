"""The backend pool: choosing, failover attempts, accounting, failure reports, views and metrics."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from services.kit.health import HealthPolicy
from services.kit.pool import IDEMPOTENT_METHODS, Failure, NoHealthyBackend, Pool, retryable

THREE = [("a", "http://127.0.0.1:9001"), ("b", "http://127.0.0.1:9002"), ("c", "http://127.0.0.1:9003")]


def make_pool(backends=THREE, **kwargs) -> Pool:
    kwargs.setdefault("rng", random.Random(7))
    return Pool("test", backends, **kwargs)


def names(backends) -> list[str]:
    return [backend.name for backend in backends]


# ------------------------------------------------------------------ choose / attempts


def test_choose_returns_a_healthy_backend_in_turn():
    pool = make_pool()
    assert names(pool.choose() for _ in range(6)) == ["a", "b", "c", "a", "b", "c"]


def test_choose_on_an_empty_pool_raises_naming_the_pool():
    pool = make_pool(backends=[])
    with pytest.raises(NoHealthyBackend, match=r"'test'.*none configured") as info:
        pool.choose()
    assert info.value.pool == "test"


def test_choose_raises_when_every_backend_is_down():
    pool = make_pool()
    for backend in pool.backends():
        pool.report_failure(backend, Failure.CONNECT, "refused")
    with pytest.raises(NoHealthyBackend, match="a, b, c"):
        pool.choose()


def test_choose_skips_excluded_backends():
    pool = make_pool()
    a, b, _ = pool.backends()
    picks = {pool.choose(exclude=[a, b]).name for _ in range(5)}
    assert picks == {"c"}


def test_choose_raises_when_every_healthy_backend_is_excluded():
    pool = make_pool()
    with pytest.raises(NoHealthyBackend):
        pool.choose(exclude=pool.backends())


def test_backend_urls_lose_their_trailing_slash():
    pool = make_pool(backends=[("a", "http://127.0.0.1:9001/")])
    assert pool.get("a").url == "http://127.0.0.1:9001"


def test_attempts_yields_each_healthy_backend_once():
    pool = make_pool()
    assert sorted(names(pool.attempts())) == ["a", "b", "c"]


def test_attempts_respects_the_limit():
    pool = make_pool()
    assert len(list(pool.attempts(limit=2))) == 2


def test_attempts_skips_down_backends():
    pool = make_pool()
    pool.report_failure(pool.get("b"), Failure.CONNECT, "refused")
    assert sorted(names(pool.attempts())) == ["a", "c"]


def test_attempts_raises_on_the_first_attempt_when_nothing_is_healthy():
    pool = make_pool(backends=[("a", "http://127.0.0.1:9001")])
    pool.report_failure(pool.get("a"), Failure.CONNECT, "refused")
    with pytest.raises(NoHealthyBackend):
        next(pool.attempts())


def test_attempts_end_quietly_when_backends_go_down_meanwhile():
    pool = make_pool()
    attempts = pool.attempts()
    first = next(attempts)
    for backend in pool.backends():
        pool.report_failure(backend, Failure.CONNECT, "refused")
    assert list(attempts) == []
    assert first.name == "a"


# ------------------------------------------------------------------ membership


def test_adding_a_duplicate_name_is_refused():
    pool = make_pool()
    with pytest.raises(ValueError, match="already has a backend named 'a'"):
        pool.add("a", "http://127.0.0.1:9999")
    assert len(pool.backends()) == 3


def test_added_backend_takes_part_in_rotation():
    pool = make_pool(backends=[("a", "http://127.0.0.1:9001")])
    pool.add("b", "http://127.0.0.1:9002", weight=4)
    assert pool.get("b").weight == 4
    assert {pool.choose().name for _ in range(4)} == {"a", "b"}


def test_removed_backend_is_no_longer_chosen_and_is_marked_removed():
    pool = make_pool()
    c = pool.get("c")
    pool.remove("c")
    assert c.removed
    assert names(pool.backends()) == ["a", "b"]
    assert {pool.choose().name for _ in range(6)} == {"a", "b"}


def test_get_unknown_backend_names_the_known_ones():
    pool = make_pool()
    with pytest.raises(KeyError, match=r"\['a', 'b', 'c'\]"):
        pool.get("zzz")


def test_negative_weight_is_refused():
    pool = make_pool()
    with pytest.raises(ValueError, match="negative"):
        pool.set_weight("a", -1)
    assert pool.get("a").weight == 1


# ------------------------------------------------------------------ accounting


def test_begin_and_end_track_in_flight_and_served():
    pool = make_pool()
    a = pool.get("a")
    pool.begin(a)
    pool.begin(a)
    assert a.in_flight == 2
    pool.end(a, 200)
    assert (a.in_flight, a.served) == (1, 1)
    pool.end(a, "timeout")
    assert (a.in_flight, a.served) == (0, 2)


# ------------------------------------------------------------------ failures and checks


def test_connect_failure_takes_a_backend_down_at_once():
    pool = make_pool()
    b = pool.get("b")
    pool.report_failure(b, Failure.CONNECT, "connection refused")
    assert not b.healthy
    assert b.last_error == "connect: connection refused"
    assert "b" not in {pool.choose().name for _ in range(6)}


@pytest.mark.parametrize("failure", [Failure.BROKEN, Failure.TIMEOUT])
def test_broken_or_timed_out_request_leaves_the_backend_up(failure):
    pool = make_pool()
    b = pool.get("b")
    for _ in range(5):
        pool.report_failure(b, failure, "reset by peer")
    assert b.healthy
    assert b.last_error == f"{failure.value}: reset by peer"
    assert "b" in {pool.choose().name for _ in range(6)}


def test_checks_take_a_backend_down_after_fall_and_up_after_rise():
    pool = make_pool(policy=HealthPolicy(fall=3, rise=2))
    a = pool.get("a")
    pool.report_check(a, ok=False, latency=0.01, error="boom")
    pool.report_check(a, ok=False, latency=0.01)
    assert a.healthy
    pool.report_check(a, ok=False, latency=0.01)
    assert not a.healthy
    assert a.last_error == "boom"
    pool.report_check(a, ok=True, latency=0.002)
    assert not a.healthy
    pool.report_check(a, ok=True, latency=0.002)
    assert a.healthy
    assert (a.last_check_ok, a.last_check_latency) == (True, 0.002)


def test_transition_listeners_hear_each_change_once():
    pool = make_pool()
    heard = []
    pool.on_transition(lambda backend, healthy: heard.append((backend.name, healthy)))
    a = pool.get("a")
    pool.report_failure(a, Failure.CONNECT, "refused")
    pool.report_failure(a, Failure.CONNECT, "refused again")
    pool.report_check(a, ok=True, latency=0.0)
    pool.report_check(a, ok=True, latency=0.0)
    pool.report_check(a, ok=True, latency=0.0)
    assert heard == [("a", False), ("a", True)]


def test_transition_records_when_the_state_changed(clock):
    pool = make_pool(clock=clock)
    a = pool.get("a")
    assert a.changed_at == clock.now
    clock.advance(12.5)
    pool.report_failure(a, Failure.CONNECT, "refused")
    assert a.changed_at == clock.now


# ------------------------------------------------------------------ retryable


def test_connect_failures_are_retryable_for_every_method():
    for method in ("GET", "POST", "PATCH", "DELETE"):
        assert retryable(Failure.CONNECT, method)


@pytest.mark.parametrize("failure", [Failure.BROKEN, Failure.TIMEOUT])
def test_broken_and_timeout_retry_only_idempotent_methods(failure):
    for method in IDEMPOTENT_METHODS:
        assert retryable(failure, method)
    assert retryable(failure, "get")
    assert not retryable(failure, "POST")
    assert not retryable(failure, "PATCH")
    assert not retryable(failure, "post")


# ------------------------------------------------------------------ snapshot


def test_snapshot_describes_policy_and_every_backend(clock):
    pool = make_pool(policy=HealthPolicy(interval=0.5, timeout=0.2, fall=3, rise=4), clock=clock)
    a, b, _ = pool.backends()
    pool.begin(a)
    pool.begin(b)
    pool.end(b, 200)
    pool.report_check(b, ok=True, latency=0.0123)
    pool.report_failure(a, Failure.CONNECT, "refused")
    clock.advance(3)

    snap = pool.snapshot()

    assert snap["pool"] == "test"
    assert snap["algorithm"] == "round_robin"
    assert snap["health_check"] == {"interval_seconds": 0.5, "timeout_seconds": 0.2, "fall": 3, "rise": 4}
    assert snap["healthy"] == 2
    by_name = {entry["name"]: entry for entry in snap["backends"]}
    assert list(by_name) == ["a", "b", "c"]
    assert by_name["a"]["state"] == "down"
    assert by_name["a"]["healthy"] is False
    assert by_name["a"]["in_flight"] == 1
    assert by_name["a"]["last_error"] == "connect: refused"
    assert by_name["a"]["seconds_in_state"] == 3.0
    assert by_name["b"] == {
        "name": "b",
        "url": "http://127.0.0.1:9002",
        "state": "healthy",
        "healthy": True,
        "weight": 1,
        "in_flight": 0,
        "requests_served": 1,
        "last_check_ok": True,
        "last_check_latency_ms": 12.3,
        "last_change": clock.now - 3,
        "seconds_in_state": 3.0,
        "last_error": None,
        "breaker": "closed",
    }
    assert by_name["c"]["last_check_latency_ms"] is None


# ------------------------------------------------------------------ metrics


def test_collect_exports_per_backend_metrics(registry: CollectorRegistry):
    pool = make_pool(registry=registry)
    a, b, _ = pool.backends()
    pool.set_weight("b", 5)
    pool.begin(a)
    pool.begin(b)
    pool.end(b, 200)
    pool.begin(b)
    pool.end(b, 503)
    pool.report_check(b, ok=True, latency=0.25)
    pool.report_failure(a, Failure.CONNECT, "refused")
    attempts = pool.attempts()
    next(attempts)
    next(attempts)  # the second attempt of a request counts as a retry

    def value(name, backend, **labels):
        return registry.get_sample_value(name, {"pool": "test", "backend": backend, **labels})

    assert value("scalelab_backend_up", "a") == 0.0
    assert value("scalelab_backend_up", "b") == 1.0
    assert value("scalelab_backend_in_flight", "a") == 1.0
    assert value("scalelab_backend_weight", "b") == 5.0
    assert value("scalelab_backend_check_latency_seconds", "b") == 0.25
    assert value("scalelab_backend_check_latency_seconds", "c") is None
    assert value("scalelab_backend_requests_total", "b", status="200") == 1.0
    assert value("scalelab_backend_requests_total", "b", status="503") == 1.0
    assert value("scalelab_backend_health_transitions_total", "a", to="down") == 1.0
    assert value("scalelab_backend_health_transitions_total", "a", to="up") == 0.0
    assert sum(value("scalelab_backend_retries_total", name) for name in ("a", "b", "c")) == 1.0
