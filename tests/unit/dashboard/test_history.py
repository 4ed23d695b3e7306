"""The charts' history: bounded in time, thinned when read, split into series by key prefix."""

from __future__ import annotations

import itertools

from dashboard.history import MAX_POINTS, History, Sample


def filled(seconds: float, count: int, start: float = 1_000.0) -> History:
    """Return a history of ``seconds`` holding ``count`` one-second samples (value ``rps`` = index)."""
    history = History(seconds, interval=1.0)
    for index in range(count):
        history.add(Sample(start + index, {"rps": float(index)}))
    return history


def test_an_empty_history_has_no_latest_sample_and_an_empty_window():
    history = History(60, interval=1.0)
    assert len(history) == 0
    assert history.latest() is None
    assert history.window(60) == []


def test_samples_older_than_the_history_span_are_dropped():
    history = filled(10, 21)  # times 1000 .. 1020
    times = [sample.time for sample in history.window(3600)]
    assert times == [1010.0 + n for n in range(11)]
    assert history.latest().time == 1020.0


def test_time_bounds_the_history_even_when_samples_come_faster_than_the_interval():
    history = History(10, interval=0.01)
    for index in range(100):
        history.add(Sample(1_000.0 + index, {}))
    assert [sample.time for sample in history.window(3600)] == [1089.0 + n for n in range(11)]


def test_window_keeps_only_the_last_seconds():
    history = filled(3600, 100)
    window = history.window(5)
    assert [sample.time for sample in window] == [1094.0, 1095.0, 1096.0, 1097.0, 1098.0, 1099.0]


def test_a_short_window_is_not_thinned():
    history = filled(3600, 50)
    assert len(history.window(3600, max_points=50)) == 50


def test_an_hour_is_thinned_to_at_most_max_points_keeping_the_newest_sample():
    history = filled(3600, 3600)
    window = history.window(3600)
    assert len(window) <= MAX_POINTS
    assert len(window) >= MAX_POINTS * 0.9  # thinned, not decimated
    assert window[-1] == history.latest()
    times = [sample.time for sample in window]
    assert times == sorted(times)
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert gaps == {3600 / MAX_POINTS}  # every n-th sample: evenly spaced


def test_thinning_keeps_the_newest_sample_whatever_the_count():
    for count in (601, 799, 1001, 1799):
        history = filled(3600, count)
        window = history.window(3600, max_points=200)
        assert len(window) <= 200, count
        assert window[-1].time == 1_000.0 + count - 1, count


def test_series_returns_one_line_per_key_with_the_prefix_in_key_order():
    samples = [
        Sample(1.0, {"split.gateways.gateway-2": 3.0, "split.gateways.gateway-1": 1.0, "rps": 4.0}),
        Sample(2.0, {"split.gateways.gateway-1": 2.0, "split.microservices.microservice-1": 9.0}),
    ]
    series = History.series(samples, "split.gateways.")
    assert [line.key for line in series] == ["split.gateways.gateway-1", "split.gateways.gateway-2"]
    assert series[0].times == [1.0, 2.0]
    assert series[0].values == [1.0, 2.0]
    assert series[1].values == [3.0, None]  # gateway-2 missing in the second sample


def test_series_of_a_prefix_nobody_has_is_empty():
    assert History.series([Sample(1.0, {"rps": 1.0})], "db.") == []
    assert History.series([], "rps") == []
