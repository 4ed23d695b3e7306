"""The seeded plan: the same seed gives the same requests in the same order; the schedule paces them."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest

from scalelab.experiments.plan import PlannedRequest, Schedule, requests, sequence, wire_path
from scalelab.experiments.spec import LoadProfile

MIXED = LoadProfile(
    users=4, requests=500, seed=42, mix={"data_hot": 50, "data_new": 20, "process": 20, "longtask": 10}, hot_keys=5
)


def test_the_same_seed_gives_the_same_sequence() -> None:
    assert sequence(MIXED) == sequence(replace(MIXED))
    assert len(sequence(MIXED)) == 500
    assert [request.seq for request in sequence(MIXED)] == list(range(500))


def test_another_seed_gives_another_sequence() -> None:
    assert sequence(MIXED) != sequence(replace(MIXED, seed=43))


def test_the_sequence_does_not_depend_on_users_rate_or_timeouts() -> None:
    # Only the seed, the mix, hot_keys and repeat decide the requests; the rest decides their timing.
    other = replace(MIXED, users=1, rate=50.0, timeout=1.0)
    assert sequence(MIXED) == sequence(other)


def test_a_duration_plan_is_endless_and_its_prefix_is_the_count_plan() -> None:
    endless = replace(MIXED, requests=None, duration=5.0)
    assert sequence(endless, 500) == sequence(MIXED)
    with pytest.raises(ValueError, match="endless"):
        sequence(endless)


def test_the_mix_sets_the_share_of_each_endpoint() -> None:
    counts = Counter(request.endpoint for request in sequence(replace(MIXED, requests=10_000)))
    assert set(counts) == {"data_hot", "data_new", "process", "longtask"}
    assert 0.45 < counts["data_hot"] / 10_000 < 0.55
    assert 0.07 < counts["longtask"] / 10_000 < 0.13


def test_endpoints_become_methods_paths_keys_and_bodies() -> None:
    by_endpoint = {request.endpoint: request for request in sequence(MIXED)}
    assert by_endpoint["data_hot"].method == "GET" and by_endpoint["data_hot"].path == "/data"
    assert by_endpoint["data_hot"].key in {f"hot-{n}" for n in range(5)}
    assert by_endpoint["data_new"].key.startswith("new-42-")
    assert (by_endpoint["process"].method, by_endpoint["process"].path, by_endpoint["process"].key) == (
        "GET",
        "/process",
        "",
    )
    assert by_endpoint["longtask"].method == "POST" and by_endpoint["longtask"].body == {"duration": 0.5}


def test_new_keys_are_never_repeated_unless_asked() -> None:
    keys = [request.key for request in sequence(replace(MIXED, mix={"data_new": 1}))]
    assert len(set(keys)) == len(keys)


def test_repeat_sends_each_drawn_request_that_many_times_in_a_row() -> None:
    plan = sequence(LoadProfile(requests=50, repeat=10, mix={"data_new": 1}, seed=1))
    keys = [request.key for request in plan]
    assert [keys[i * 10 : (i + 1) * 10] for i in range(5)] == [[f"new-1-{i}"] * 10 for i in range(5)]


def test_new_keys_go_out_under_the_run_s_namespace_and_hot_keys_do_not() -> None:
    new = PlannedRequest(0, "data_new", "GET", "/data", "new-1-0")
    hot = PlannedRequest(1, "data_hot", "GET", "/data", "hot-3")
    assert wire_path(new, "ab12") == "/data?key=ab12.new-1-0"
    assert wire_path(hot, "ab12") == "/data?key=hot-3"
    assert wire_path(PlannedRequest(2, "process", "GET", "/process"), "ab12") == "/process"
    assert wire_path(PlannedRequest(3, "data_hot", "GET", "/data", "a b/c"), "") == "/data?key=a%20b%2Fc"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_rate_makes_request_n_due_n_over_rate_seconds_after_the_start() -> None:
    clock = FakeClock()
    schedule = Schedule(LoadProfile(duration=1.0, rate=4.0), start=1000.0, clock=clock)
    taken = [schedule.take() for _ in range(4)]
    assert [(request.seq, due) for request, due in taken] == [(0, 1000.0), (1, 1000.25), (2, 1000.5), (3, 1000.75)]
    assert schedule.take() is None  # the fifth would be due at the end
    assert schedule.stopped


def test_without_a_rate_requests_are_due_when_taken_until_the_duration_ends() -> None:
    clock = FakeClock()
    schedule = Schedule(LoadProfile(duration=2.0), start=1000.0, clock=clock)
    clock.now = 1001.5
    assert schedule.take() == (next(requests(LoadProfile(duration=2.0))), 1001.5)
    clock.now = 1002.0
    assert schedule.take() is None


def test_a_count_plan_ends_when_exhausted_or_stopped() -> None:
    clock = FakeClock()
    schedule = Schedule(LoadProfile(requests=3), start=1000.0, clock=clock)
    assert [schedule.take()[0].seq for _ in range(3)] == [0, 1, 2]  # type: ignore[index]
    assert schedule.take() is None
    stopped = Schedule(LoadProfile(requests=3), start=1000.0, clock=clock)
    stopped.stop()
    assert stopped.take() is None
    capped = Schedule(LoadProfile(requests=3, max_seconds=10), start=1000.0, clock=clock)
    clock.now = 1010.0
    assert capped.take() is None


def _due_times(profile: LoadProfile) -> list[float]:
    schedule = Schedule(profile, 1000.0, clock=lambda: 1000.0)
    due = []
    while (taken := schedule.take()) is not None:
        due.append(taken[1] - 1000.0)
    return due


def _close(measured: list[int], expected: list[int]) -> bool:
    # One request may fall either side of a second's edge: due times are sums of 1/rate steps.
    return all(abs(got - want) <= 1 for got, want in zip(measured, expected, strict=True))


def _per_second(due: list[float], duration: int) -> list[int]:
    counts = Counter(int(moment) for moment in due)
    return [counts[second] for second in range(duration)]


def test_a_ramp_rises_from_the_rate_to_the_peak_rate() -> None:
    rates = _per_second(_due_times(LoadProfile(duration=10, rate=10, shape="ramp", peak_rate=50)), 10)
    assert rates[0] in (10, 11, 12) and rates[-1] in range(44, 51)
    assert rates == sorted(rates)


def test_steps_hold_each_rate_for_an_equal_share_of_the_duration() -> None:
    rates = _per_second(_due_times(LoadProfile(duration=8, rate=10, shape="steps", peak_rate=40, steps=4)), 8)
    assert _close(rates, [10, 10, 20, 20, 30, 30, 40, 40])


def test_a_spike_sends_the_peak_rate_through_the_middle_fifth() -> None:
    rates = _per_second(_due_times(LoadProfile(duration=10, rate=10, shape="spike", peak_rate=100)), 10)
    assert _close(rates, [10] * 4 + [100, 100] + [10] * 4)


def test_a_constant_shape_keeps_request_n_due_at_n_over_rate() -> None:
    due = _due_times(LoadProfile(duration=2, rate=50))
    assert len(due) == 100 and due[37] == pytest.approx(37 / 50)
