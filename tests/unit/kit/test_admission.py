"""Request slots: a burst waits in the queue; past the queue a request is a 503 naming the instance, at once."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from services.kit import admission as admission_module
from services.kit.admission import Admission
from services.kit.errors import ApiError


def test_a_request_past_the_slots_and_the_queue_is_a_503_with_retry_after_at_once():
    registry = CollectorRegistry()
    admission = Admission("gateway-2", 2, 0, 2, registry)
    admission.enter()
    admission.enter()
    started = time.monotonic()
    with pytest.raises(ApiError) as info:
        admission.enter()
    assert time.monotonic() - started < 0.1
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
    assert "gateway-2 is busy" in info.value.message and "SCALELAB_THREADS" in info.value.message
    assert registry.get_sample_value("scalelab_requests_refused_busy_total") == 1
    admission.leave()
    admission.enter()  # the slot given back serves the next request


def test_a_queued_request_runs_when_a_slot_comes_free():
    admission = Admission("cache", 1, 1, 2, None)
    admission.enter()
    entered = threading.Event()
    waiter = threading.Thread(target=lambda: (admission.enter(), entered.set()))
    waiter.start()
    time.sleep(0.05)
    assert not entered.is_set()
    with pytest.raises(ApiError, match="1 requests already wait"):  # the queue holds one
        admission.enter()
    admission.leave()
    assert entered.wait(1)
    waiter.join()


def test_a_queued_request_that_waits_too_long_is_a_503(monkeypatch):
    monkeypatch.setattr(admission_module, "QUEUE_WAIT_SECONDS", 0.05)
    admission = Admission("cache", 1, 1, 2, None)
    admission.enter()
    with pytest.raises(ApiError, match="no request thread came free"):
        admission.enter()


@pytest.mark.parametrize(("limit", "queue", "reserved"), [(0, 0, 2), (4, -1, 2), (4, 0, -1)])
def test_sizes_that_cannot_work_are_refused(limit, queue, reserved):
    with pytest.raises(ValueError, match="at least 1"):
        Admission("cache", limit, queue, reserved, None)
