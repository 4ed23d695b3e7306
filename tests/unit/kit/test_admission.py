"""Request slots: a full set refuses at once with a 503 naming the instance; a slot given back is taken again."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.kit.admission import Admission
from services.kit.errors import ApiError


def test_a_request_past_the_limit_is_a_503_with_retry_after_and_counted():
    registry = CollectorRegistry()
    admission = Admission("gateway-2", 2, 2, registry)
    admission.enter()
    admission.enter()
    with pytest.raises(ApiError) as info:
        admission.enter()
    assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
    assert "gateway-2 is busy" in info.value.message and "SCALELAB_THREADS" in info.value.message
    assert registry.get_sample_value("scalelab_requests_refused_busy_total") == 1
    admission.leave()
    admission.enter()  # the slot given back serves the next request


@pytest.mark.parametrize(("limit", "reserved"), [(0, 2), (4, -1)])
def test_sizes_that_cannot_work_are_refused(limit, reserved):
    with pytest.raises(ValueError, match="at least 1"):
        Admission("cache", limit, reserved, None)
