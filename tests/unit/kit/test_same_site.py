"""Every Flask service answers only to its own names and refuses state-changing requests from other sites."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from services.cache.app import create_app
from services.kit.config import ConfigError


@pytest.fixture
def cache():
    return create_app({"instance": "cache"}, registry=CollectorRegistry()).test_client()


@pytest.mark.parametrize("host", ["localhost:5004", "127.0.0.1:5004", "[::1]:5004", "cache:5004", "cache"])
def test_its_own_names_are_answered(cache, host: str) -> None:
    assert cache.get("/health", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5004", "cache.evil.example", "127.0.0.1.nip.io"])
def test_a_rebound_name_is_refused_before_any_route(cache, host: str) -> None:
    answer = cache.post("/cache/k", json={"value": "poisoned"}, headers={"Host": host})
    assert answer.status_code == 403
    assert "SCALELAB_ALLOWED_HOSTS" in answer.get_json()["error"]
    assert cache.get("/cache/k", headers={"Host": "localhost"}).status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "http://evil.example", "Content-Type": "text/plain"},
    ],
)
def test_a_write_from_another_site_is_refused(cache, headers: dict[str, str]) -> None:
    answer = cache.post("/cache/k", data='{"value": "poisoned"}', headers={"Host": "127.0.0.1:5004", **headers})
    assert answer.status_code == 403
    assert cache.get("/cache/k").status_code == 404


def test_a_write_with_no_origin_or_from_the_lab_itself_goes_through(cache) -> None:
    assert cache.post("/cache/a", json={"value": 1}).status_code == 201  # as curl and the scripts send it
    assert cache.post("/cache/b", json={"value": 2}, headers={"Origin": "http://127.0.0.1:8050"}).status_code == 201
    assert cache.post("/cache/flush").status_code == 200  # the classic open flush, no body


def test_a_lab_room_lists_its_names() -> None:
    client = create_app({"allowed_hosts": ["lab.example"]}, registry=CollectorRegistry()).test_client()
    assert client.get("/health", headers={"Host": "lab.example:5004"}).status_code == 200
    with pytest.raises(ConfigError, match="SCALELAB_ALLOWED_HOSTS"):
        create_app({"allowed_hosts": ["http://lab.example/"]}, registry=CollectorRegistry())
