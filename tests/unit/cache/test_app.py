"""The cache service over HTTP, through Flask's test client."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from werkzeug.test import Client

from services.cache.app import create_app
from services.kit.config import ConfigError
from services.kit.express import EXPRESS

ADMIN = {"X-Admin-Token": "t"}


@pytest.fixture
def make_client(registry):
    def make(**overrides):
        overrides.setdefault("admin_token", "t")
        app = create_app(overrides, registry=registry)
        return app.test_client()

    return make


@pytest.fixture
def client(make_client):
    return make_client()


def url(key: str) -> str:
    return "/cache/" + quote(key, safe="")


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response.is_json, response.data
    body = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["status"] == status
    return body


# ------------------------------------------------------------------ set / get / delete


def test_set_get_delete(client):
    response = client.post(url("user:1"), json={"value": {"name": "Ada"}, "ttl": 60})
    assert response.status_code == 201
    assert response.get_json() == {"key": "user:1", "stored": True, "ttl_seconds": 60}

    response = client.get(url("user:1"))
    assert response.status_code == 200
    body = response.get_json()
    assert body["key"] == "user:1"
    assert body["value"] == {"name": "Ada"}
    assert 0 < body["ttl_remaining_seconds"] <= 60

    assert client.delete(url("user:1")).get_json() == {"key": "user:1", "deleted": True}
    assert_json_error(client.get(url("user:1")), 404)
    assert client.delete(url("user:1")).get_json() == {"key": "user:1", "deleted": False}


def test_missing_key_is_404_naming_the_key(client):
    body = assert_json_error(client.get(url("never-set")), 404)
    assert body["key"] == "never-set"


def test_set_without_ttl_uses_the_default(make_client):
    client = make_client(default_ttl_seconds=7.5)
    assert client.post(url("k"), json={"value": 1}).get_json()["ttl_seconds"] == 7.5


@pytest.mark.parametrize("value", [None, 0, "", [], {"nested": {"list": [1, "two", None]}}, "ünïcödé"])
def test_any_json_value_round_trips(client, value):
    assert client.post(url("k"), json={"value": value}).status_code == 201
    assert client.get(url("k")).get_json()["value"] == value


@pytest.mark.parametrize(
    "key",
    [
        "a/b/c",
        "/leading-slash",
        "a//b",
        "/",
        "with space",
        "ключ-日本-ü",
        "emoji 🚀",
        "100%",
        "q?x=1&y=2",
        "#hash",
        "data:my_data",
    ],
)
def test_awkward_keys_round_trip_in_the_path(client, key):
    assert client.post(url(key), json={"value": key}).status_code == 201
    body = client.get(url(key)).get_json()
    assert body == {"key": key, "value": key, "ttl_remaining_seconds": body["ttl_remaining_seconds"]}
    assert client.delete(url(key)).get_json() == {"key": key, "deleted": True}


def test_path_and_query_forms_name_the_same_key(client):
    client.post(url("a/b"), json={"value": 1})
    assert client.get("/cache", query_string={"key": "a/b"}).get_json()["value"] == 1


@pytest.mark.parametrize("key", ["flush", "stats"])
def test_keys_named_like_routes_work_through_the_query(client, key):
    response = client.post("/cache", query_string={"key": key}, json={"value": f"a key called {key}"})
    assert response.status_code == 201
    assert response.get_json()["key"] == key
    assert client.get("/cache", query_string={"key": key}).get_json()["value"] == f"a key called {key}"
    assert client.get("/cache/stats").get_json()["size"] == 1
    assert client.delete("/cache", query_string={"key": key}).get_json() == {"key": key, "deleted": True}
    assert_json_error(client.get("/cache", query_string={"key": key}), 404)


@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_query_form_without_a_key_is_400(client, method):
    assert_json_error(getattr(client, method)("/cache", json={"value": 1}), 400)
    assert_json_error(getattr(client, method)("/cache?key=", json={"value": 1}), 400)


# ------------------------------------------------------------------ flush / stats


def test_flush_empties_the_cache(client):
    for key in ("a", "b", "c"):
        client.post(url(key), json={"value": key})
    response = client.post("/cache/flush")
    assert response.status_code == 200
    assert response.get_json() == {"flushed": 3}
    assert_json_error(client.get(url("a")), 404)
    assert client.get("/cache/stats").get_json()["size"] == 0


def test_stats_count_what_happened(make_client):
    client = make_client(capacity=2)
    client.post(url("a"), json={"value": 1})
    client.post(url("b"), json={"value": 2})
    client.get(url("a"))
    client.get(url("missing"))
    client.post(url("c"), json={"value": 3})  # evicts b, the least recently used
    stats = client.get("/cache/stats").get_json()
    assert stats["hits"] == 1
    assert stats["misses"] == 1
    assert stats["hit_ratio"] == 0.5
    assert stats["sets"] == 3
    assert stats["evictions"] == 1
    assert stats["expirations"] == 0
    assert stats["size"] == 2
    assert stats["capacity"] == 2
    assert_json_error(client.get(url("b")), 404)


# ------------------------------------------------------------------ bad input


def test_malformed_json_is_400(client):
    response = client.post(url("k"), data="{not json", content_type="application/json")
    assert_json_error(response, 400)


def test_json_body_is_read_whatever_its_content_type(client):
    # `curl -d '{"value": 1}'` sends application/x-www-form-urlencoded
    response = client.post(url("k"), data='{"value": 1}', content_type="application/x-www-form-urlencoded")
    assert response.status_code == 201
    assert client.get(url("k")).get_json()["value"] == 1
    assert_json_error(client.post(url("k"), data="value=1", content_type="application/x-www-form-urlencoded"), 400)


@pytest.mark.parametrize("body", [{}, {"val": 1}, [1, 2], "value", 3])
def test_body_without_value_is_400(client, body):
    assert_json_error(client.post(url("k"), json=body), 400)
    assert_json_error(client.get(url("k")), 404)


@pytest.mark.parametrize("ttl", [-1, 0, 86_401, "60", True, [60]])
def test_bad_ttl_is_400(client, ttl):
    body = assert_json_error(client.post(url("k"), json={"value": 1, "ttl": ttl}), 400)
    assert "ttl" in body["error"]
    assert_json_error(client.get(url("k")), 404)


def test_fractional_ttl_is_accepted(client):
    assert client.post(url("k"), json={"value": 1, "ttl": 0.5}).get_json()["ttl_seconds"] == 0.5


def test_unknown_route_is_404_json(client):
    assert_json_error(client.get("/nope"), 404)


def test_wrong_method_is_405_json_with_allow(client):
    response = client.put(url("k"), json={"value": 1})
    assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]
    # /cache/stats and /cache/flush are those routes for every method: their keys go in the query.
    assert set(client.get("/cache/flush").headers["Allow"].split(", ")) == {"OPTIONS", "POST"}
    assert_json_error(client.post("/cache/stats", json={"value": 1}), 405)
    assert client.post("/cache?key=stats", json={"value": 1}).status_code == 201
    assert client.get("/cache?key=stats").get_json()["value"] == 1


def test_oversize_body_is_413_json(make_client):
    client = make_client(max_body_bytes=100)
    assert client.post(url("small"), json={"value": "x" * 10}).status_code == 201
    response = client.post(url("big"), json={"value": "x" * 1000})
    assert_json_error(response, 413)
    assert_json_error(client.get(url("big")), 404)


# ------------------------------------------------------------------ health and metrics


def test_health_reports_entries(client):
    client.post(url("a"), json={"value": 1})
    body = client.get("/health").get_json()
    assert body["status"] == "ok"
    assert body["service"] == "cache"
    assert body["instance"] == "cache"
    assert body["entries"] == 1


def test_metrics_are_prometheus_text(client, registry):
    client.post(url("a"), json={"value": 1})
    client.get(url("a"))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.get_data(as_text=True)
    assert "scalelab_cache_hits_total 1.0" in text
    assert "scalelab_http_requests_total" in text
    assert registry.get_sample_value("scalelab_cache_hits_total") == 1


def test_http_metrics_label_the_route_not_the_raw_key(client, registry):
    client.post(url("secret/key"), json={"value": 1})
    labels = {"route": "/cache/<path:key>", "method": "POST", "status": "201"}
    assert registry.get_sample_value("scalelab_http_requests_total", labels) == 1


# ------------------------------------------------------------------ control API


def test_control_get_needs_the_admin_token(client):
    assert_json_error(client.get("/control"), 401)
    assert_json_error(client.get("/control", headers={"X-Admin-Token": "wrong"}), 401)
    body = client.get("/control", headers=ADMIN).get_json()
    assert body["instance"] == "cache"
    assert body["knobs"]["default_ttl_seconds"]["value"] == 30.0


def test_control_put_changes_the_default_ttl(client, registry):
    response = client.put("/control", headers=ADMIN, json={"default_ttl_seconds": 5})
    assert response.status_code == 200
    assert response.get_json()["changed"] == {"default_ttl_seconds": 5.0}
    assert client.post(url("k"), json={"value": 1}).get_json()["ttl_seconds"] == 5.0
    assert client.get("/cache/stats").get_json()["default_ttl_seconds"] == 5.0
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "default_ttl_seconds"}) == 5.0


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": ""}])
def test_control_put_without_the_right_token_is_401_and_changes_nothing(client, headers):
    assert_json_error(client.put("/control", headers=headers, json={"default_ttl_seconds": 5}), 401)
    assert client.get("/control", headers=ADMIN).get_json()["knobs"]["default_ttl_seconds"]["value"] == 30.0
    assert client.post(url("k"), json={"value": 1}).get_json()["ttl_seconds"] == 30.0


@pytest.mark.parametrize("body", [{"default_ttl_seconds": 0}, {"default_ttl_seconds": "5"}, {"capacity": 5}, {}])
def test_control_put_with_bad_values_is_400_and_changes_nothing(client, body):
    assert_json_error(client.put("/control", headers=ADMIN, json=body), 400)
    assert client.get("/control", headers=ADMIN).get_json()["knobs"]["default_ttl_seconds"]["value"] == 30.0


def test_control_is_disabled_without_an_admin_token(make_client):
    client = make_client(admin_token="")
    body = assert_json_error(client.get("/control", headers={"X-Admin-Token": ""}), 401)
    assert "disabled" in body["error"]


@pytest.mark.parametrize(
    "raw", ['{"value": NaN}', '{"value": [1, Infinity]}', '{"value": {"a": -Infinity}}', '{"value": 1e400}']
)
def test_values_json_cannot_carry_are_400_and_not_stored(client, raw):
    body = assert_json_error(client.post(url("k"), data=raw, content_type="application/json"), 400)
    assert "finite" in body["error"]
    assert_json_error(client.get(url("k")), 404)


def test_a_deeply_nested_value_is_400(client):
    body = assert_json_error(
        client.post(url("k"), data='{"value": ' + "[" * 100_000, content_type="application/json"), 400
    )
    assert "nested" in body["error"]


# ------------------------------------------------------------------ the byte bounds


def test_a_value_over_the_entry_limit_is_413_naming_the_limit(make_client):
    client = make_client(max_entry_bytes=1000, max_bytes=10_000)
    assert client.post(url("k"), json={"value": "x" * 900}).status_code == 201
    body = assert_json_error(client.post(url("k"), json={"value": "x" * 1000}), 413)
    assert "CACHE_MAX_ENTRY_BYTES" in body["error"] and "1000" in body["error"]
    assert body["limit_bytes"] == 1000 and body["size_bytes"] > 1000
    assert client.get(url("k")).get_json()["value"] == "x" * 900  # the old value stays


def test_the_byte_bound_evicts_and_shows_in_metrics_and_health(make_client, registry):
    client = make_client(max_entry_bytes=1000, max_bytes=2000)
    for n in range(5):
        assert client.post(url(f"k{n}"), json={"value": "x" * 800}).status_code == 201
    stats = client.get("/cache/stats").get_json()
    assert stats["size"] == 2 and stats["evictions"] == 3
    used = registry.get_sample_value("scalelab_cache_bytes")
    assert 1600 < used <= 2000
    assert registry.get_sample_value("scalelab_cache_capacity_bytes") == 2000
    assert client.get("/health").get_json()["bytes"] == used


def test_an_entry_limit_larger_than_the_cache_is_a_config_error(make_client):
    with pytest.raises(ConfigError, match="CACHE_MAX_ENTRY_BYTES"):
        make_client(max_entry_bytes=2000, max_bytes=1000)


# ------------------------------------------------------------------ the express lane


@pytest.mark.parametrize("key", ["data:my_data", "user-1.a~b", "missing"])
def test_a_plain_read_answers_the_same_through_the_express_lane_as_through_flask(make_client, key):
    client = make_client()
    client.post(url("data:my_data"), json={"value": {"id": "my_data", "name": "é"}, "ttl": 60})
    client.post(url("user-1.a~b"), json={"value": [1, 2.5, None], "ttl": 60})
    behind = Client(client.application.extensions[EXPRESS].behind)
    fast, slow = client.get(url(key)), behind.get(url(key))
    assert (fast.status, fast.headers["Content-Type"]) == (slow.status, slow.headers["Content-Type"])
    assert int(fast.headers["Content-Length"]) == len(fast.data)
    fast_body, slow_body = fast.get_json(), slow.get_json()
    if fast.status_code == 200:  # the entry aged between the two reads
        assert fast_body.pop("ttl_remaining_seconds") >= slow_body.pop("ttl_remaining_seconds")
    assert fast_body == slow_body


@pytest.mark.parametrize(
    "path", ["/cache/stats", "/cache/flush", "/cache/a%2Fb", "/cache/a/", "/cache/data:my_data?lease=true", "/cache/é"]
)
def test_reads_that_are_not_plain_go_to_flask(client, path):
    seen = []
    lanes = client.application.extensions[EXPRESS]
    behind = lanes.behind
    lanes.behind = lambda environ, start: seen.append(environ["PATH_INFO"]) or behind(environ, start)
    client.get(path)
    assert len(seen) == 1
