"""Balancing algorithms, on their own and switched at runtime in a pool."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from services.kit.algorithms import ALGORITHMS, make_algorithm
from services.kit.pool import Backend, Pool


def backends(*names: str) -> list[Backend]:
    return [Backend(name, f"http://127.0.0.1:{9000 + i}") for i, name in enumerate(names)]


def picks(algorithm, candidates, count: int) -> list[str]:
    return [algorithm.choose(candidates).name for _ in range(count)]


def longest_run(sequence: list[str], item: str) -> int:
    best = run = 0
    for value in sequence:
        run = run + 1 if value == item else 0
        best = max(best, run)
    return best


def test_known_algorithms():
    assert set(ALGORITHMS) == {"round_robin", "least_connections", "power_of_two", "weighted_round_robin"}


def test_unknown_algorithm_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown balancing algorithm 'random'.*least_connections"):
        make_algorithm("random")


# ------------------------------------------------------------------ round robin


def test_round_robin_spreads_evenly_in_turn():
    pool = backends("a", "b", "c")
    sequence = picks(make_algorithm("round_robin"), pool, 300)
    assert sequence[:6] == ["a", "b", "c", "a", "b", "c"]
    assert Counter(sequence) == {"a": 100, "b": 100, "c": 100}


# ------------------------------------------------------------------ least connections


def test_least_connections_picks_the_backend_with_fewest_in_flight():
    pool = backends("a", "b", "c")
    pool[0].in_flight, pool[1].in_flight, pool[2].in_flight = 5, 1, 3
    assert set(picks(make_algorithm("least_connections"), pool, 20)) == {"b"}


def test_least_connections_follows_load_as_it_changes():
    pool = backends("a", "b")
    algorithm = make_algorithm("least_connections")
    pool[0].in_flight = 2
    assert algorithm.choose(pool).name == "b"
    pool[1].in_flight = 4
    assert algorithm.choose(pool).name == "a"


def test_least_connections_shares_ties_evenly():
    pool = backends("a", "b", "c")
    assert Counter(picks(make_algorithm("least_connections"), pool, 300)) == {"a": 100, "b": 100, "c": 100}


# ------------------------------------------------------------------ power of two choices


def test_power_of_two_never_picks_the_busier_of_two():
    pool = backends("idle", "busy")
    pool[1].in_flight = 3
    assert set(picks(make_algorithm("power_of_two", random.Random(1)), pool, 50)) == {"idle"}


def test_power_of_two_never_picks_the_busiest_and_favours_the_idlest():
    pool = backends("b0", "b1", "b2", "b3", "b4")
    for load, backend in enumerate(pool):
        backend.in_flight = load  # b0 idle ... b4 busiest
    counts = Counter(picks(make_algorithm("power_of_two", random.Random(42)), pool, 2000))
    assert counts["b4"] == 0
    assert counts["b0"] > counts["b1"] > counts["b2"] > counts["b3"] > 0


def test_power_of_two_with_one_candidate_returns_it():
    pool = backends("only")
    assert picks(make_algorithm("power_of_two", random.Random(3)), pool, 3) == ["only"] * 3


def test_power_of_two_is_reproducible_with_a_seeded_rng():
    pool = backends("a", "b", "c", "d")
    first = picks(make_algorithm("power_of_two", random.Random(9)), pool, 50)
    second = picks(make_algorithm("power_of_two", random.Random(9)), pool, 50)
    assert first == second
    assert len(set(first)) > 1


# ------------------------------------------------------------------ smooth weighted round robin


def test_weighted_round_robin_gives_exactly_three_to_one():
    pool = backends("heavy", "light")
    pool[0].weight = 3
    sequence = picks(make_algorithm("weighted_round_robin"), pool, 400)
    assert Counter(sequence) == {"heavy": 300, "light": 100}


def test_weighted_round_robin_interleaves_rather_than_bursts():
    pool = backends("heavy", "light")
    pool[0].weight = 3
    sequence = picks(make_algorithm("weighted_round_robin"), pool, 400)
    assert longest_run(sequence, "heavy") < 4
    assert longest_run(sequence, "light") == 1
    # every window of four picks holds the 3:1 split
    for start in range(0, 400, 4):
        assert sequence[start : start + 4].count("light") == 1


def test_weighted_round_robin_never_picks_weight_zero():
    pool = backends("a", "b", "off")
    pool[2].weight = 0
    counts = Counter(picks(make_algorithm("weighted_round_robin"), pool, 100))
    assert counts == {"a": 50, "b": 50}


def test_weighted_round_robin_equal_weights_is_round_robin():
    pool = backends("a", "b", "c")
    assert picks(make_algorithm("weighted_round_robin"), pool, 6) == ["a", "b", "c", "a", "b", "c"]


# ------------------------------------------------------------------ switching at runtime


def test_pool_switches_algorithm_at_runtime():
    pool = Pool("p", [("a", "http://127.0.0.1:9001"), ("b", "http://127.0.0.1:9002")], rng=random.Random(0))
    a = pool.get("a")
    pool.begin(a)
    pool.begin(a)
    # round robin ignores load
    assert [pool.choose().name for _ in range(4)] == ["a", "b", "a", "b"]

    pool.set_algorithm("least_connections")
    assert pool.algorithm_name == "least_connections"
    assert {pool.choose().name for _ in range(10)} == {"b"}

    pool.set_weight("a", 3)
    pool.set_algorithm("weighted_round_robin")
    assert Counter(pool.choose().name for _ in range(40)) == {"a": 30, "b": 10}
    assert pool.snapshot()["algorithm"] == "weighted_round_robin"


def test_pool_keeps_its_algorithm_when_asked_for_an_unknown_one():
    pool = Pool("p", [("a", "http://127.0.0.1:9001")], algorithm="least_connections")
    with pytest.raises(ValueError):
        pool.set_algorithm("fastest")
    assert pool.algorithm_name == "least_connections"


def test_pool_refuses_an_unknown_algorithm_at_construction():
    with pytest.raises(ValueError, match="unknown balancing algorithm"):
        Pool("p", [], algorithm="fastest")
