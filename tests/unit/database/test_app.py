"""The database service over HTTP, with the simulated latency turned off."""

from __future__ import annotations

import random
import time

import pytest

from services.database.app import QuerySimulator, create_app
from services.kit.config import ConfigError
from services.kit.knobs import Knob, Knobs

ADMIN = {"X-Admin-Token": "t"}


@pytest.fixture
def make_app(tmp_path, registry):
    apps = []

    def make(**overrides):
        settings = {
            "latency_ms": 0,
            "jitter_ms": 0,
            "seed_records": 10,
            "admin_token": "t",
            "path": str(tmp_path / "db.sqlite3"),
        }
        settings.update(overrides)
        apps.append(create_app(settings, registry=registry))
        return apps[-1]

    yield make
    for app in apps:
        app.extensions["record_store"].close()


@pytest.fixture
def client(make_app):
    return make_app().test_client()


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["status"] == status
    assert body["error"]
    return body


def test_seeded_record(client):
    response = client.get("/db/my_data")
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == "my_data"
    assert "created" not in body


def test_unseen_record_is_created_on_first_read(client):
    first = client.get("/db/new-id").get_json()
    assert first["created"] is True
    second = client.get("/db/new-id").get_json()
    assert "created" not in second
    assert {**second, "created": True} == first


def test_unseen_record_is_the_same_in_another_database(make_app, tmp_path):
    one = make_app(path=str(tmp_path / "a.sqlite3")).test_client()
    two = create_app({"latency_ms": 0, "jitter_ms": 0, "path": str(tmp_path / "b.sqlite3")})
    try:
        assert one.get("/db/zz/top").get_json() == two.test_client().get("/db/zz/top").get_json()
    finally:
        two.extensions["record_store"].close()


def test_put_then_get(client):
    response = client.put("/db/42", json={"name": "Douglas"})
    assert response.status_code == 200
    assert response.get_json() == {"name": "Douglas", "id": "42"}
    assert client.get("/db/42").get_json() == {"name": "Douglas", "id": "42"}


@pytest.mark.parametrize("body", [[1, 2], "text", 5])
def test_put_non_object_is_400(client, body):
    assert_json_error(client.put("/db/42", json=body), 400)


def test_put_malformed_json_is_400(client):
    assert_json_error(client.put("/db/42", data="{oops", content_type="application/json"), 400)


def test_list_pages(client):
    body = client.get("/db?limit=3&offset=2").get_json()
    assert body["count"] == 3
    assert body["offset"] == 2
    assert body["total"] == 11  # my_data + 1..10
    everything = client.get("/db").get_json()["records"]
    assert body["records"] == everything[2:5]


@pytest.mark.parametrize("query", ["limit=abc", "limit=-1", "limit=1001", "limit=2.5", "offset=x", "offset=-3"])
def test_bad_paging_is_400(client, query):
    body = assert_json_error(client.get(f"/db?{query}"), 400)
    assert query.split("=")[0] in body["error"]


def test_stats_count_queries_by_operation(client):
    client.get("/db/1")
    client.get("/db/2")
    client.put("/db/3", json={"v": 3})
    client.get("/db?limit=1")
    client.get("/db?limit=bad")  # refused before it becomes a query
    body = client.get("/stats").get_json()
    assert body["queries"] == {"read": 2, "write": 1, "list": 1}
    assert body["total_queries"] == 4
    assert body["records"] == 11


def test_error_rate_one_fails_every_query_with_503(make_app, registry):
    client = make_app(error_rate=1).test_client()
    body = assert_json_error(client.get("/db/1"), 503)
    assert "error_rate" in body["error"]
    assert_json_error(client.put("/db/1", json={"v": 1}), 503)
    assert registry.get_sample_value("scalelab_db_injected_errors_total") == 2
    assert client.get("/stats").get_json()["total_queries"] == 2


def test_error_rate_knob_at_runtime(client):
    assert client.put("/control", headers=ADMIN, json={"error_rate": 1}).status_code == 200
    assert_json_error(client.get("/db/1"), 503)
    assert client.put("/control", headers=ADMIN, json={"error_rate": 0}).status_code == 200
    assert client.get("/db/1").status_code == 200


def test_knobs_are_validated(client):
    assert_json_error(client.put("/control", headers=ADMIN, json={"error_rate": 1.5}), 400)
    assert_json_error(client.put("/control", headers=ADMIN, json={"latency_ms": -1}), 400)
    assert_json_error(client.put("/control", json={"error_rate": 1}), 401)
    knobs = client.get("/control", headers=ADMIN).get_json()["knobs"]
    assert {name: knob["value"] for name, knob in knobs.items()} == {
        "latency_ms": 0.0,
        "jitter_ms": 0.0,
        "error_rate": 0.0,
    }


def test_metrics_count_records_and_queries(client, registry):
    client.get("/db/1")
    client.get("/db/brand-new")
    assert registry.get_sample_value("scalelab_db_records") == 12
    assert registry.get_sample_value("scalelab_db_queries_total", {"operation": "read"}) == 2
    assert "scalelab_db_query_duration_seconds_bucket" in client.get("/metrics").get_data(as_text=True)


# ------------------------------------------------------------------ the simulated latency


def simulator(registry, latency_ms: float, jitter_ms: float, seed: int = 0):
    knobs = Knobs(
        [
            Knob("latency_ms", float(latency_ms), "", 0, 60_000),
            Knob("jitter_ms", float(jitter_ms), "", 0, 60_000),
            Knob("error_rate", 0.0, "", 0, 1),
        ]
    )
    slept: list[float] = []
    return QuerySimulator(knobs, registry, rng=random.Random(seed), sleep=slept.append), slept


def test_each_query_waits_the_latency(registry):
    sim, slept = simulator(registry, latency_ms=50, jitter_ms=0)
    assert sim.run("read", lambda: "row") == "row"
    assert slept == [0.05]


def test_jitter_spreads_the_wait_around_the_latency(registry):
    sim, slept = simulator(registry, latency_ms=50, jitter_ms=10)
    for _ in range(200):
        sim.run("read", lambda: None)
    assert all(0.04 <= seconds <= 0.06 for seconds in slept)
    assert len(set(slept)) > 100
    assert min(slept) < 0.045 and max(slept) > 0.055


def test_no_latency_means_no_wait(registry):
    sim, slept = simulator(registry, latency_ms=0, jitter_ms=0)
    sim.run("read", lambda: None)
    assert slept == []
    assert sim.counts == {"read": 1}


@pytest.mark.parametrize("raw", ["²", "١٢", "٣", "9" * 5000, "1" + "0" * 30])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_paging_numbers_int_refuses_or_too_long_are_400(client, name, raw):
    body = assert_json_error(client.get("/db", query_string={name: raw}), 400)
    assert name in body["error"]
    assert len(body["error"]) < 200


def test_reads_of_unseen_ids_do_not_grow_the_table_forever(make_app, registry):
    client = make_app(max_generated_records=5, seed_records=2).test_client()
    for n in range(50):
        body = client.get(f"/db/new-{n}").get_json()
        assert body["id"] == f"new-{n}" and body["created"] is True
    assert client.get("/stats").get_json()["records"] == 3 + 5
    assert registry.get_sample_value("scalelab_db_records") == 8


def test_a_negative_bound_is_a_config_error(make_app):
    with pytest.raises(ConfigError, match="DATABASE_MAX_GENERATED_RECORDS"):
        make_app(max_generated_records=-1)


def test_a_query_outlasting_the_callers_deadline_is_a_504_and_its_write_is_not_made(make_app):
    client = make_app(latency_ms=2000).test_client()
    started = time.monotonic()
    response = client.put("/db/late", json={"v": 1}, headers={"X-Request-Deadline": f"{time.time() + 0.2:.3f}"})
    assert_json_error(response, 504)
    assert "latency" in response.get_json()["error"]
    assert time.monotonic() - started < 0.6
    client.put("/control", headers=ADMIN, json={"latency_ms": 0})
    assert client.get("/db/late").get_json().get("created") is True  # the write never happened
