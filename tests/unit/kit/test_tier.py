"""A balanced tier scaling in: removing a backend from its pool, knobs, health checks and connections."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from services.kit.errors import ApiError
from services.kit.knobs import Knobs
from services.kit.settings import PoolSettings
from services.kit.tier import BalancedTier

from ..support import wait_for

BACKENDS = [("a", "http://127.0.0.1:9001"), ("b", "http://127.0.0.1:9002"), ("c", "http://127.0.0.1:9003")]


class RecordingProbe:
    """A probe that always passes and records which backend it probed."""

    def __init__(self) -> None:
        self.probed: list[str] = []

    def __call__(self, backend, policy) -> None:
        self.probed.append(backend.name)


@pytest.fixture
def probe() -> RecordingProbe:
    return RecordingProbe()


@pytest.fixture
def tier(registry: CollectorRegistry, probe: RecordingProbe):
    settings = PoolSettings(health_interval=0.01, health_timeout=0.01)
    made = BalancedTier("microservices", BACKENDS, settings, Knobs([], registry), registry, probe)
    yield made
    made.checker.stop()


def names(tier: BalancedTier) -> list[str]:
    return [backend.name for backend in tier.pool.backends()]


def test_a_removed_backend_leaves_the_pool_and_its_weight_knob(tier, registry):
    removed = tier.remove_backend("b")
    assert removed.name == "b" and removed.removed
    assert names(tier) == ["a", "c"]
    assert {tier.pool.choose().name for _ in range(6)} == {"a", "c"}
    assert "weight.b" not in tier.knobs
    assert "weight.a" in tier.knobs
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "weight.b"}) is None
    assert registry.get_sample_value("scalelab_backend_up", {"pool": "microservices", "backend": "b"}) is None
    assert registry.get_sample_value("scalelab_backend_up", {"pool": "microservices", "backend": "a"}) == 1.0
    with pytest.raises(ApiError) as info:
        tier.knobs.update({"weight.b": 3})
    assert info.value.status == 400


def test_a_removed_backend_is_no_longer_health_checked(tier, probe):
    tier.start()
    wait_for(lambda: "b" in probe.probed, what="a first probe of b")
    tier.remove_backend("b")
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name == "health-b" and t.is_alive()],
        what="b's probe thread to end",
    )
    seen, others = probe.probed.count("b"), probe.probed.count("a")
    wait_for(lambda: probe.probed.count("a") >= others + 5, what="more probes of a")
    assert probe.probed.count("b") == seen


def test_removing_an_unknown_backend_is_404_naming_the_known_ones(tier):
    with pytest.raises(ApiError) as info:
        tier.remove_backend("zzz")
    assert info.value.status == 404
    assert "no backend 'zzz'" in info.value.message and "a, b, c" in info.value.message
    assert info.value.extra == {"backends": ["a", "b", "c"]}
    assert names(tier) == ["a", "b", "c"]


def test_the_last_backend_cannot_be_removed(tier):
    tier.remove_backend("a")
    tier.remove_backend("b")
    with pytest.raises(ApiError) as info:
        tier.remove_backend("c")
    assert info.value.status == 409
    assert "last backend" in info.value.message and "add another backend first" in info.value.message
    assert names(tier) == ["c"]
    assert "weight.c" in tier.knobs


def test_removal_closes_the_backends_pooled_client(tier, monkeypatch):
    backend = tier.pool.get("b")
    client = tier.client(backend)
    closed = []
    monkeypatch.setattr(client, "abort_in_flight", lambda: closed.append(True) or 0)
    tier.remove_backend("b")
    assert closed == [True]
    # A request that picked b just before its removal gets a client that is not kept.
    assert tier.client(backend) is not client
    assert tier.client(tier.pool.get("a")) is tier.client(tier.pool.get("a"))


def test_removal_waits_for_the_requests_in_flight_up_to_the_drain_time(tier):
    backend = tier.pool.get("b")
    tier.pool.begin(backend)
    finisher = threading.Timer(0.1, tier.pool.end, args=(backend, 200))
    finisher.start()
    started = time.monotonic()
    tier.remove_backend("b", drain_seconds=5.0)
    took = time.monotonic() - started
    finisher.join()
    assert backend.in_flight == 0
    assert 0.05 <= took < 2.0  # waited for the request, not for the whole drain time


def test_a_request_that_does_not_finish_is_waited_for_only_the_drain_time(tier):
    backend = tier.pool.get("b")
    tier.pool.begin(backend)
    started = time.monotonic()
    tier.remove_backend("b", drain_seconds=0.1)
    assert 0.1 <= time.monotonic() - started < 2.0
    assert backend.in_flight == 1


def test_a_backend_can_be_added_again_under_a_removed_name(tier, probe):
    tier.start()
    tier.remove_backend("c")
    added = tier.add_backend({"name": "c", "url": "http://127.0.0.1:9009", "weight": 2})
    assert names(tier) == ["a", "b", "c"]
    assert tier.knobs["weight.c"] == 2
    count = probe.probed.count("c")
    wait_for(lambda: probe.probed.count("c") > count + 2, what="the re-added c to be probed")
    assert added.url == "http://127.0.0.1:9009"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"name": "d", "url": "http://"}, "url"),
        ({"name": "d", "url": "http://127.0.0.1:99999"}, "url"),
        ({"name": "d", "url": "http://127.0.0.1:port"}, "url"),
        ({"name": "d", "url": "http://127.0.0.1:9004/path"}, "url"),
        ({"name": "d", "url": "http://127.0.0.1:9004?q=1"}, "url"),
        ({"name": "d", "url": "http://user:pw@127.0.0.1:9004"}, "url"),
        ({"name": "", "url": "http://127.0.0.1:9004"}, "name"),
        ({"name": "a/b", "url": "http://127.0.0.1:9004"}, "name"),
        ({"name": "x" * 64, "url": "http://127.0.0.1:9004"}, "name"),
        ({"name": "wéight", "url": "http://127.0.0.1:9004"}, "name"),
        ({"name": "d", "url": "http://127.0.0.1:9004", "weight": 10**400}, "weight"),
    ],
)
def test_a_backend_spec_the_tier_cannot_use_is_400(tier, spec, match):
    with pytest.raises(ApiError, match=match) as info:
        tier.add_backend(spec)
    assert info.value.status == 400
    assert names(tier) == ["a", "b", "c"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9004", "http://127.0.0.1:9004/", "http://localhost"])
def test_a_plain_base_url_is_accepted(tier, url):
    assert tier.add_backend({"name": "d.1_x-2", "url": url}).name == "d.1_x-2"
