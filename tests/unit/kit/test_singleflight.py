"""Request coalescing: concurrent calls for one key share one run."""

from __future__ import annotations

import threading
import time

import pytest

from services.kit.singleflight import SingleFlight

from ..support import wait_for

CALLERS = 100


class BlockedFn:
    """A function that blocks until released, counting its runs; optionally raising instead of returning."""

    def __init__(self, error: Exception | None = None) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.runs = 0
        self.error = error

    def __call__(self):
        self.runs += 1
        self.started.set()
        assert self.release.wait(10), "the test never released the leader"
        if self.error is not None:
            raise self.error
        return {"record": 42}


def run_callers(flight: SingleFlight, fn: BlockedFn, key: str = "k"):
    """Start CALLERS threads calling flight.do(key, fn); release fn once all but the leader wait."""
    outcomes: list[tuple[str, object, bool | None]] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            result, shared = flight.do(key, fn)
        except Exception as exc:
            outcome = ("error", exc, None)
        else:
            outcome = ("ok", result, shared)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=call) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: flight.coalesced == CALLERS - 1, what="every follower to join the leader's call")
    fn.release.set()
    for thread in threads:
        thread.join(10)
    assert len(outcomes) == CALLERS
    return outcomes


def test_concurrent_callers_share_one_run():
    flight = SingleFlight()
    fn = BlockedFn()
    outcomes = run_callers(flight, fn)

    assert fn.runs == 1
    assert all(kind == "ok" for kind, _, _ in outcomes)
    results = [result for _, result, _ in outcomes]
    assert all(result is results[0] for result in results)
    assert results[0] == {"record": 42}
    assert sum(shared for _, _, shared in outcomes) == CALLERS - 1
    assert flight.coalesced == CALLERS - 1


def test_an_exception_reaches_every_caller():
    flight = SingleFlight()
    error = LookupError("database unavailable")
    fn = BlockedFn(error=error)
    outcomes = run_callers(flight, fn)

    assert fn.runs == 1
    assert [kind for kind, _, _ in outcomes] == ["error"] * CALLERS
    assert all(exc is error for _, exc, _ in outcomes)


def test_different_keys_run_independently():
    flight = SingleFlight()
    blocked = BlockedFn()
    leader = threading.Thread(target=flight.do, args=("slow", blocked))
    leader.start()
    try:
        assert blocked.started.wait(5)
        # another key is not held up by the blocked one, and does not share its result
        assert flight.do("fast", lambda: "fast result") == ("fast result", False)
        assert flight.coalesced == 0
    finally:
        blocked.release.set()
        leader.join(5)


def test_key_is_released_after_completion():
    flight = SingleFlight()
    runs = []

    def fn():
        runs.append(1)
        return len(runs)

    assert flight.do("k", fn) == (1, False)
    assert flight.do("k", fn) == (2, False)
    assert len(runs) == 2


def test_key_is_released_after_a_failure():
    flight = SingleFlight()

    def fail():
        raise ValueError("first try fails")

    with pytest.raises(ValueError, match="first try"):
        flight.do("k", fail)
    assert flight.do("k", lambda: "second try") == ("second try", False)


def test_a_waiting_caller_gives_up_after_its_wait_and_the_run_goes_on():
    flight = SingleFlight()
    release = threading.Event()
    started = threading.Event()
    results = []

    def slow():
        started.set()
        release.wait(5)
        return "done"

    leader = threading.Thread(target=lambda: results.append(flight.do("k", slow)))
    leader.start()
    started.wait(5)
    begun = time.monotonic()
    with pytest.raises(TimeoutError, match=r"0\.05 s"):
        flight.do("k", lambda: "never runs", wait=0.05)
    assert 0.04 <= time.monotonic() - begun < 1
    release.set()
    leader.join(5)
    assert results == [("done", False)]
    assert flight.do("k", lambda: "again", wait=0.05) == ("again", False)
