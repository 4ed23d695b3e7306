"""A gateway in-process, in front of real cache, database and microservice apps served on ephemeral ports."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry
from werkzeug.test import Client

from services.database.app import create_app as create_database
from services.gateway.app import create_app as create_gateway
from services.gateway.cache_aside import cache_key
from services.kit.config import ConfigError
from services.kit.express import EXPRESS
from services.microservice.app import create_app as create_microservice
from services.worker.app import create_app as create_worker

from ..standins import CannedServer
from ..support import wait_for
from .conftest import ADMIN, SECRET, Served, assert_json_error, auth, closed_url


def test_a_gateway_needs_a_jwt_secret(make_gateway):
    with pytest.raises(ConfigError, match="SCALELAB_JWT_SECRET"):
        make_gateway(jwt_secret="")


# ------------------------------------------------------------------ tokens


@pytest.mark.parametrize("path", ["/data", "/process", "/task/abc"])
def test_protected_routes_need_a_token(make_gateway, path):
    client = make_gateway().test_client()
    assert "missing token" in assert_json_error(client.get(path), 401)["error"]
    assert_json_error(client.get(path, headers={"Authorization": "Bearer not.a.token"}), 401)


def test_longtask_needs_a_token(make_gateway):
    assert_json_error(make_gateway().test_client().post("/longtask", json={"duration": 0}), 401)


def test_a_token_from_another_gateway_with_the_same_secret_is_accepted(make_gateway, backends):
    first = make_gateway(database_url=backends["database"].url).test_client()
    second = create_gateway(
        {
            "jwt_secret": SECRET,
            "database_url": backends["database"].url,
            "cache_url": closed_url(),
            "microservices": [],
        },
        registry=CollectorRegistry(),
    )
    try:
        assert second.test_client().get("/data", headers=auth(first)).status_code == 200
    finally:
        second.extensions["gateway"].microservices.checker.stop()


def test_a_token_signed_with_another_secret_is_refused(make_gateway):
    other = create_gateway({"jwt_secret": "x" * 48, "microservices": []}, registry=CollectorRegistry())
    client = make_gateway().test_client()
    assert_json_error(client.get("/data", headers=auth(other.test_client())), 401)


# ------------------------------------------------------------------ /data through the cache


def test_data_is_read_from_the_database_then_from_the_cache(gateway, backends):
    client = gateway.test_client()
    headers = auth(client)
    first = client.get("/data?key=my_data", headers=headers).get_json()
    assert first["cached"] is False
    assert first["gateway_id"] == "2"
    assert first["key"] == "my_data"
    assert first["data"]["id"] == "my_data"
    second = client.get("/data?key=my_data", headers=headers).get_json()
    assert second["cached"] is True
    assert second["data"] == first["data"]
    # the gateway stored the record under its namespaced key
    stored = backends["cache"].app.test_client().get("/cache", query_string={"key": cache_key("my_data")})
    assert stored.get_json()["value"] == first["data"]


def test_data_key_defaults_to_my_data(gateway):
    client = gateway.test_client()
    assert client.get("/data", headers=auth(client)).get_json()["key"] == "my_data"


@pytest.mark.parametrize("key", ["a/b", "with space", "flush", "stats", "ключ", "100%"])
def test_awkward_data_keys_are_cached_under_their_own_name(gateway, key):
    client = gateway.test_client()
    headers = auth(client)
    first = client.get("/data", query_string={"key": key}, headers=headers).get_json()
    assert first["data"]["id"] == key
    second = client.get("/data", query_string={"key": key}, headers=headers).get_json()
    assert second["cached"] is True
    assert second["data"] == first["data"]


def test_with_the_cache_disabled_every_read_goes_to_the_database(gateway, registry):
    client = gateway.test_client()
    headers = auth(client)
    assert client.put("/control", headers=ADMIN, json={"cache_enabled": False}).status_code == 200
    for _ in range(3):
        assert client.get("/data?key=1", headers=headers).get_json()["cached"] is False
    assert registry.get_sample_value("scalelab_gateway_database_reads_total") == 3
    assert registry.get_sample_value("scalelab_gateway_cache_lookups_total", {"result": "bypass"}) == 3


def test_a_dead_cache_only_costs_a_trip_to_the_database(make_gateway, backends, registry):
    client = make_gateway(database_url=backends["database"].url).test_client()  # cache_url: nothing listens
    headers = auth(client)
    body = client.get("/data?key=3", headers=headers).get_json()
    assert body["cached"] is False
    assert body["data"]["id"] == "3"
    assert client.get("/health").get_json()["cache"] == "skipped"
    assert registry.get_sample_value("scalelab_gateway_cache_lookups_total", {"result": "error"}) >= 1


def test_with_breakers_on_the_caches_breaker_opens_after_the_failures_then_tries_it_again(
    make_gateway, backends, registry
):
    # Coalescing off: a read looks the key up once (single-flight looks again before it reads the database),
    # then fills the cache: two failed calls to the cache per read.
    app = make_gateway(
        database_url=backends["database"].url, breaker_failures=3, breaker_cooldown_seconds=0.3, coalescing="off"
    )
    client = app.test_client()
    headers = auth(client)
    assert client.get("/data?key=3", headers=headers).status_code == 200
    assert client.get("/health").get_json()["cache_breaker"] == "closed"  # two failures of the three it takes
    assert client.get("/data?key=3", headers=headers).status_code == 200
    health = client.get("/health").get_json()
    assert (health["cache_breaker"], health["cache"]) == ("open", "skipped")
    assert registry.get_sample_value("scalelab_gateway_breaker_state", {"target": "cache", "state": "open"}) == 1
    time.sleep(0.35)
    assert client.get("/health").get_json()["cache_breaker"] == "half_open"
    # The trial fails (nothing listens): open again, and the reads still come from the database.
    assert client.get("/data?key=3", headers=headers).get_json()["cached"] is False
    assert client.get("/health").get_json()["cache_breaker"] == "open"


def test_a_dead_database_is_503(make_gateway):
    client = make_gateway().test_client()
    body = assert_json_error(client.get("/data?key=1", headers=auth(client)), 503)
    assert "database unavailable" in body["error"]


# ------------------------------------------------------------------ /process through the pool


def test_process_goes_to_a_microservice(gateway):
    client = gateway.test_client()
    response = client.get("/process", headers=auth(client))
    assert response.status_code == 200
    body = response.get_json()
    assert body["service_id"] == "1"
    assert body["gateway_id"] == "2"
    assert body["message"] == "Processed by microservice 1"


def test_process_fails_over_from_a_dead_microservice(make_gateway, backends):
    app = make_gateway(microservices=[f"dead={closed_url()}", f"alive={backends['microservice'].url}"])
    client = app.test_client()
    headers = auth(client)
    for _ in range(4):
        assert client.get("/process", headers=headers).status_code == 200
    status = {entry["name"]: entry for entry in client.get("/pool/status").get_json()["backends"]}
    assert status["dead"]["healthy"] is False
    assert status["alive"]["healthy"] is True


def test_process_with_every_microservice_dead_is_503(make_gateway):
    client = make_gateway(microservices=[f"dead-1={closed_url()}", f"dead-2={closed_url()}"]).test_client()
    body = assert_json_error(client.get("/process", headers=auth(client)), 503)
    assert "microservices" in body["error"]


def test_microservice_errors_are_passed_through(gateway, backends):
    knobs = backends["microservice"].app.extensions["knobs"]  # the knobs of the app the server runs
    knobs.update({"error_rate": 1})
    client = gateway.test_client()
    response = client.get("/process", headers=auth(client))
    assert response.status_code == 503
    assert response.get_json()["gateway_id"] == "2"


# ------------------------------------------------------------------ the pool and its control routes


def test_pool_status(gateway, backends):
    body = gateway.test_client().get("/pool/status").get_json()
    assert body["pool"] == "microservices"
    assert body["algorithm"] == "round_robin"
    assert [entry["name"] for entry in body["backends"]] == ["microservice-1"]
    assert body["backends"][0]["url"] == backends["microservice"].url


def test_health_checks_take_a_dead_microservice_down(make_gateway):
    app = make_gateway(microservices=[f"dead={closed_url()}"])
    pool = app.extensions["gateway"].microservices.pool
    wait_for(lambda: not pool.get("dead").healthy, what="the health check to mark the backend down")


def test_adding_a_backend_needs_the_admin_token(gateway):
    client = gateway.test_client()
    spec = {"name": "microservice-9", "url": closed_url()}
    assert_json_error(client.post("/pool/backends", json=spec), 401)
    assert_json_error(client.post("/pool/backends", json=spec, headers={"X-Admin-Token": "wrong"}), 401)
    assert len(client.get("/pool/status").get_json()["backends"]) == 1


def test_adding_a_backend(gateway, backends, serve):
    extra = serve(create_microservice({"service_time_ms": 0, "service_id": "9"}, registry=CollectorRegistry()))
    client = gateway.test_client()
    response = client.post("/pool/backends", headers=ADMIN, json={"name": "microservice-9", "url": extra.url})
    assert response.status_code == 201
    assert response.get_json() == {"added": "microservice-9", "url": extra.url}
    assert [b["name"] for b in client.get("/pool/status").get_json()["backends"]] == [
        "microservice-1",
        "microservice-9",
    ]
    assert "weight.microservice-9" in client.get("/control", headers=ADMIN).get_json()["knobs"]
    headers = auth(client)
    ids = {client.get("/process", headers=headers).get_json()["service_id"] for _ in range(4)}
    assert ids == {"1", "9"}


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ({"name": "m"}, 400),
        ({"url": "http://127.0.0.1:1"}, 400),
        ({"name": "m", "url": "https://127.0.0.1:1"}, 400),
        ({"name": "m", "url": "http://127.0.0.1:1", "weight": -1}, 400),
        ({"name": "m", "url": "http://127.0.0.1:1", "weight": 101}, 400),
        ({"name": "m", "url": "http://127.0.0.1:1", "weight": True}, 400),
        (["m", "http://127.0.0.1:1"], 400),
        ({"name": "microservice-1", "url": "http://127.0.0.1:1"}, 409),
    ],
)
def test_bad_backend_specs_are_refused(gateway, spec, status):
    client = gateway.test_client()
    assert_json_error(client.post("/pool/backends", headers=ADMIN, json=spec), status)
    assert len(client.get("/pool/status").get_json()["backends"]) == 1


def two_microservices(make_gateway, backends, serve):
    """A gateway balancing microservice-1 and microservice-9, both running."""
    extra = serve(create_microservice({"service_time_ms": 0, "service_id": "9"}, registry=CollectorRegistry()))
    return make_gateway(
        cache_url=backends["cache"].url,
        database_url=backends["database"].url,
        microservices=[f"microservice-1={backends['microservice'].url}", f"microservice-9={extra.url}"],
    )


def test_removing_a_backend_needs_the_admin_token(make_gateway, backends, serve):
    client = two_microservices(make_gateway, backends, serve).test_client()
    assert_json_error(client.delete("/pool/backends/microservice-9"), 401)
    assert_json_error(client.delete("/pool/backends/microservice-9", headers={"X-Admin-Token": "wrong"}), 401)
    assert len(client.get("/pool/status").get_json()["backends"]) == 2


def test_removing_a_backend(make_gateway, backends, serve, registry):
    client = two_microservices(make_gateway, backends, serve).test_client()
    headers = auth(client)
    assert {client.get("/process", headers=headers).get_json()["service_id"] for _ in range(4)} == {"1", "9"}
    response = client.delete("/pool/backends/microservice-9", headers=ADMIN)
    assert response.status_code == 200
    assert response.get_json() == {"removed": "microservice-9"}
    assert [b["name"] for b in client.get("/pool/status").get_json()["backends"]] == ["microservice-1"]
    assert "weight.microservice-9" not in client.get("/control", headers=ADMIN).get_json()["knobs"]
    assert registry.get_sample_value("scalelab_knob_value", {"knob": "weight.microservice-9"}) is None
    assert {client.get("/process", headers=headers).get_json()["service_id"] for _ in range(4)} == {"1"}
    # Removed already: a second DELETE is a 404 naming what is left (membership.withdraw accepts that).
    body = assert_json_error(client.delete("/pool/backends/microservice-9", headers=ADMIN), 404)
    assert "microservice-1" in body["error"] and body["backends"] == ["microservice-1"]


def test_the_last_backend_cannot_be_removed(gateway):
    client = gateway.test_client()
    body = assert_json_error(client.delete("/pool/backends/microservice-1", headers=ADMIN), 409)
    assert "last backend" in body["error"]
    assert [b["name"] for b in client.get("/pool/status").get_json()["backends"]] == ["microservice-1"]
    assert client.get("/process", headers=auth(client)).status_code == 200


def test_removing_an_unknown_backend_is_404_naming_the_known_ones(gateway):
    body = assert_json_error(gateway.test_client().delete("/pool/backends/nosuch", headers=ADMIN), 404)
    assert "'nosuch'" in body["error"] and "microservice-1" in body["error"]


def test_algorithm_and_weight_knobs_reach_the_pool(gateway):
    client = gateway.test_client()
    response = client.put(
        "/control", headers=ADMIN, json={"algorithm": "weighted_round_robin", "weight.microservice-1": 5}
    )
    assert response.status_code == 200
    status = client.get("/pool/status").get_json()
    assert status["algorithm"] == "weighted_round_robin"
    assert status["backends"][0]["weight"] == 5
    assert_json_error(client.put("/control", headers=ADMIN, json={"algorithm": "fastest"}), 400)
    assert client.get("/pool/status").get_json()["algorithm"] == "weighted_round_robin"


# ------------------------------------------------------------------ /longtask


def test_longtask_with_the_worker_down_is_503(make_gateway):
    client = make_gateway().test_client()
    body = assert_json_error(client.post("/longtask", headers=auth(client), json={"duration": 0}), 503)
    assert "worker unavailable" in body["error"]


# ------------------------------------------------------------------ /data keys


@pytest.mark.parametrize("key", ["", "k" * 1025])
def test_a_data_key_that_is_empty_or_too_long_is_400_naming_it(gateway, key):
    client = gateway.test_client()
    body = assert_json_error(client.get("/data", query_string={"key": key}, headers=auth(client)), 400)
    assert "key" in body["error"] and body["parameter"] == "key"


def test_the_longest_data_key_works(gateway):
    client = gateway.test_client()
    assert client.get("/data", query_string={"key": "k" * 1024}, headers=auth(client)).status_code == 200


# ------------------------------------------------------------------ /longtask when the worker is full or failing


@pytest.fixture
def full_worker(serve, tmp_path):
    """A worker whose queue holds one task and whose runners are stopped, so it stays full."""
    app = create_worker({"path": str(tmp_path / "tasks.sqlite3"), "max_queued": 1}, registry=CollectorRegistry())
    app.extensions["task_runner"].stop()
    yield serve(app)
    app.extensions["task_runner"].stop()


def test_a_full_worker_queue_is_passed_on_as_429_with_retry_after(make_gateway, full_worker):
    client = make_gateway(worker_url=full_worker.url).test_client()
    headers = auth(client)
    assert client.post("/longtask", headers=headers, json={"duration": 0}).status_code == 202
    response = client.post("/longtask", headers=headers, json={"duration": 0})
    body = assert_json_error(response, 429)
    assert response.headers["Retry-After"] == "2"  # the worker's own advice
    assert "WORKER_MAX_QUEUED" in body["error"] and body["gateway_id"] == "2"


def test_a_worker_that_cannot_be_reached_is_503_with_retry_after(make_gateway):
    client = make_gateway().test_client()
    response = client.post("/longtask", headers=auth(client), json={"duration": 0})
    assert_json_error(response, 503)
    assert response.headers["Retry-After"] == "1"


def test_a_null_payload_reaches_the_worker(make_gateway, serve, tmp_path):
    worker = create_worker({"path": str(tmp_path / "tasks.sqlite3"), "task_seconds": 0}, registry=CollectorRegistry())
    try:
        client = make_gateway(worker_url=serve(worker).url).test_client()
        response = client.post("/longtask", headers=auth(client), data="null", content_type="application/json")
        assert response.status_code == 202
        task_id = response.get_json()["task_id"]
        task = wait_for(lambda: client.get(f"/task/{task_id}", headers=auth(client)).get_json(), what="the task")
        assert task["payload"] is None
    finally:
        worker.extensions["task_runner"].stop()


# ------------------------------------------------------------------ time budgets per hop


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"request_budget_seconds": 10.0}, "must stay below SCALELAB_UPSTREAM_TIMEOUT"),
        ({"request_budget_seconds": 6.0, "upstream_timeout": 5.0}, r"GATEWAY_REQUEST_BUDGET_SECONDS \(6.0\)"),
        ({"database_timeout": 0}, "GATEWAY_DATABASE_TIMEOUT"),
        ({"microservice_timeout": -1}, "GATEWAY_MICROSERVICE_TIMEOUT"),
        ({"worker_timeout": 0}, "GATEWAY_WORKER_TIMEOUT"),
        ({"cache_timeout": 0}, "GATEWAY_CACHE_TIMEOUT"),
    ],
)
def test_budgets_must_be_positive_and_below_the_balancers_timeout(make_gateway, overrides, match):
    with pytest.raises(ConfigError, match=match):
        make_gateway(**overrides)


def test_the_default_budgets_fit_inside_the_balancers_timeout():
    from services.gateway.config import GatewayConfig

    config = GatewayConfig(jwt_secret=SECRET)
    assert config.request_budget_seconds < config.upstream_timeout
    for hop in (config.cache_timeout, config.database_timeout, config.microservice_timeout, config.worker_timeout):
        assert 0 < hop < config.request_budget_seconds


def slow_microservice(serve, service_id: str, ms: float) -> Served:
    return serve(create_microservice({"service_time_ms": ms, "service_id": service_id}, registry=CollectorRegistry()))


def test_a_slow_microservice_is_given_up_at_its_hop_timeout_and_another_one_answers(make_gateway, serve):
    slow = slow_microservice(serve, "1", 1000)
    fast = slow_microservice(serve, "2", 0)
    client = make_gateway(
        microservices=[f"slow={slow.url}", f"fast={fast.url}"], microservice_timeout=0.2
    ).test_client()
    headers = auth(client)
    started = time.monotonic()
    for _ in range(2):  # round robin: one of the two starts at the slow one
        response = client.get("/process", headers=headers)
        assert response.status_code == 200 and response.get_json()["service_id"] == "2"
    assert time.monotonic() - started < 1.0


def test_process_stops_retrying_when_the_budget_is_spent(make_gateway, serve):
    slow = [slow_microservice(serve, str(n), 1000) for n in range(3)]
    client = make_gateway(
        microservices=[f"slow-{n}={server.url}" for n, server in enumerate(slow)],
        microservice_timeout=0.3,
        request_budget_seconds=0.5,
    ).test_client()
    headers = auth(client)
    started = time.monotonic()
    body = assert_json_error(client.get("/process", headers=headers), 504)
    assert 0.4 <= time.monotonic() - started < 0.9
    # The last microservice tried got the deadline a hop margin sooner and said so itself, or the
    # gateway's own budget ran out first: either way the 504 names what was slow.
    assert "pool 'microservices'" in body["error"] or "service time (1000 ms)" in body["error"]


@pytest.fixture
def canned():
    """A canned microservice on 127.0.0.1 that records what it is sent."""
    server = CannedServer()
    server.json("GET", "/process", {"message": "canned", "service_id": "c"})
    yield server
    server.stop()


def last_process(server: CannedServer):
    """Return the last /process request the server saw (the pool's health checks reach it too)."""
    return [seen for seen in server.seen if seen.path == "/process"][-1]


def test_x_request_deadline_shortens_the_budget_and_is_passed_on(make_gateway, canned):
    server = canned
    client = make_gateway(microservices=[f"canned={server.url}"]).test_client()
    deadline = time.time() + 3
    response = client.get("/process", headers={**auth(client), "X-Request-Deadline": f"{deadline:.3f}"})
    assert response.status_code == 200
    passed_on = float(last_process(server).headers["X-Request-Deadline"])
    assert deadline - 0.5 < passed_on <= deadline + 0.01
    client.get("/process", headers=auth(client))  # without the header: the gateway's own budget
    assert float(last_process(server).headers["X-Request-Deadline"]) == pytest.approx(time.time() + 8, abs=0.5)


def test_a_deadline_already_past_is_504_before_any_call(make_gateway, canned):
    server = canned
    client = make_gateway(microservices=[f"canned={server.url}"]).test_client()
    headers = {**auth(client), "X-Request-Deadline": f"{time.time() - 1:.3f}"}
    assert_json_error(client.get("/process", headers=headers), 504)
    assert_json_error(client.get("/data?key=1", headers=headers), 504)
    assert_json_error(client.post("/longtask", headers=headers, json={}), 504)
    assert "/process" not in server.paths()  # only the pool's health checks reached it


@pytest.mark.parametrize("value", ["soon", "NaN", "inf", "1e400", "-5", "²"])
def test_a_malformed_deadline_header_is_400_naming_it(gateway, value):
    client = gateway.test_client()
    body = assert_json_error(client.get("/data", headers={**auth(client), "X-Request-Deadline": value}), 400)
    assert "X-Request-Deadline" in body["error"]


@pytest.fixture
def slow_database(serve, tmp_path):
    """A database whose every query takes a second."""
    app = create_database(
        {"latency_ms": 1000, "jitter_ms": 0, "path": str(tmp_path / "slow.sqlite3")}, registry=CollectorRegistry()
    )
    yield serve(app)
    app.extensions["record_store"].close()


def test_a_slow_database_is_504_once_the_budget_is_spent(make_gateway, backends, slow_database):
    client = make_gateway(cache_url=backends["cache"].url, database_url=slow_database.url).test_client()
    headers = {**auth(client), "X-Request-Deadline": f"{time.time() + 0.3:.3f}"}
    started = time.monotonic()
    body = assert_json_error(client.get("/data?key=slow", headers=headers), 504)
    assert time.monotonic() - started < 0.8
    assert "database" in body["error"]


def test_a_slow_database_past_its_hop_timeout_is_503_within_the_budget(make_gateway, slow_database):
    client = make_gateway(database_url=slow_database.url, database_timeout=0.2).test_client()
    body = assert_json_error(client.get("/data?key=slow", headers=auth(client)), 503)
    assert "database unavailable" in body["error"]


def test_a_cache_cut_short_by_the_budget_is_not_marked_down(make_gateway, backends, registry):
    client = make_gateway(cache_url=backends["cache"].url, database_url=backends["database"].url).test_client()
    headers = {**auth(client), "X-Request-Deadline": f"{time.time() - 1:.3f}"}
    assert_json_error(client.get("/data?key=1", headers=headers), 504)
    assert client.get("/health").get_json()["cache"] == "available"
    assert registry.get_sample_value("scalelab_gateway_cache_lookups_total", {"result": "error"}) == 0


# ------------------------------------------------------------------ the database's circuit breaker


def test_the_database_breaker_refuses_at_once_after_failed_reads_and_closes_after_a_good_trial(make_gateway):
    database = CannedServer()
    try:
        for key in ("a", "b", "c", "d"):
            database.json("GET", f"/db/{key}", {"error": "disk on fire", "status": 500}, status=500)
        client = make_gateway(database_url=database.url).test_client()  # no cache: every read goes to it
        admin = {"X-Admin-Token": "t"}
        changed = client.put("/control", json={"breaker_failures": 2, "breaker_cooldown_seconds": 0.3}, headers=admin)
        assert changed.status_code == 200
        headers = auth(client)
        for key in ("a", "b"):
            assert (
                "database answered 500"
                in assert_json_error(client.get(f"/data?key={key}", headers=headers), 503)["error"]
            )
        refused = assert_json_error(client.get("/data?key=c", headers=headers), 503)
        assert "circuit breaker is open after 2 failed reads" in refused["error"]
        assert [path for path in database.paths() if path.startswith("/db/")] == ["/db/a", "/db/b"]
        assert client.get("/health").get_json()["database_breaker"] == "open"
        time.sleep(0.35)
        database.json("GET", "/db/d", {"id": "d", "name": "Record d", "value": 4, "checksum": "x"})
        assert client.get("/data?key=d", headers=headers).status_code == 200  # the trial, and it succeeded
        assert client.get("/health").get_json()["database_breaker"] == "closed"
    finally:
        database.stop()


def test_the_database_breaker_is_off_by_default(make_gateway):
    database = CannedServer()
    try:
        database.json("GET", "/db/a", {"error": "no", "status": 500}, status=500)
        client = make_gateway(database_url=database.url).test_client()
        headers = auth(client)
        for _ in range(10):
            assert "database answered 500" in client.get("/data?key=a", headers=headers).get_json()["error"]
        assert client.get("/health").get_json()["database_breaker"] == "closed"
    finally:
        database.stop()


# ------------------------------------------------------------------ rate limiting and load shedding
def test_every_token_is_a_client_of_its_own(gateway):
    client = gateway.test_client()
    tokens = [client.get("/token").get_json()["token"] for _ in range(2)]
    subjects = {gateway.extensions["gateway"].tokens.verify(token)["sub"] for token in tokens}
    assert len(subjects) == 2


def test_a_client_over_its_rate_gets_429_with_retry_after_and_another_client_does_not(gateway, registry):
    client = gateway.test_client()
    knobs = {"client_rate_limit": 0.5, "client_burst": 2}
    assert client.put("/control", headers=ADMIN, json=knobs).status_code == 200
    first, second = auth(client), auth(client)
    assert [client.get("/process", headers=first).status_code for _ in range(2)] == [200, 200]
    refused = client.get("/process", headers=first)
    body = assert_json_error(refused, 429)
    assert refused.headers["Retry-After"] == "2"
    assert "client_rate_limit" in body["error"]
    assert client.get("/process", headers=second).status_code == 200
    assert registry.get_sample_value("scalelab_shed_total", {"reason": "client_rate"}) == 1
    assert client.get("/health").get_json()["admission"]["shed"] == 1


def test_past_the_fixed_concurrency_limit_requests_are_shed_at_once_with_503(make_gateway, serve):
    slow = slow_microservice(serve, "1", 600)
    app = make_gateway(microservices=[f"slow={slow.url}"], shedding="fixed", max_in_flight=2)
    server = serve(app)
    headers = auth(app.test_client())
    with ThreadPoolExecutor(6) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda _: requests.get(server.url + "/process", headers=headers, timeout=5), range(6)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 200, 503, 503, 503, 503]
    shed = next(answer for answer in answers if answer.status_code == 503)
    assert shed.headers["Retry-After"] == "1" and "shedding" in shed.json()["error"]
    assert shed.elapsed.total_seconds() < 0.3  # refused at once, not after waiting
    assert time.monotonic() - started < 1.5
    health = app.test_client().get("/health").get_json()["admission"]
    assert health["mode"] == "fixed" and health["limit"] == 2 and health["shed"] == 4


def test_an_unknown_shedding_mode_is_refused_at_start(make_gateway):
    with pytest.raises(ConfigError, match="GATEWAY_SHEDDING"):
        make_gateway(shedding="sometimes")


def test_once_the_retry_budget_is_spent_a_failed_call_is_not_retried(make_gateway, serve, registry):
    slow = [slow_microservice(serve, str(n), 400) for n in range(3)]
    app = make_gateway(
        microservices=[f"slow-{n}={server.url}" for n, server in enumerate(slow)],
        microservice_timeout=0.02,
        retry_budget=0,
        retry_backoff_ms=0,
    )
    client = app.test_client()
    headers = auth(client)
    started = time.monotonic()
    answers = [client.get("/process", headers=headers) for _ in range(24)]
    seconds = time.monotonic() - started
    # Each request tries all three (two retries) while the saved-up budget lasts, then only one.
    assert {answer.status_code for answer in answers[:8]} == {502}  # every attempt timed out
    # Then the floor of 5 retries a second lets a few through, and the rest end with their first failure.
    refused = [answer for answer in answers[8:] if answer.status_code == 503]
    assert len(refused) >= 5
    assert "retry budget is spent" in assert_json_error(refused[0], 503)["error"]
    assert refused[0].headers["Retry-After"] == "1"
    assert registry.get_sample_value("scalelab_retries_refused_total") >= 2
    retried = sum(
        registry.get_sample_value("scalelab_backend_retries_total", {"pool": "microservices", "backend": f"slow-{n}"})
        or 0
        for n in range(3)
    )
    assert retried <= 20 + 5 * seconds + 1  # what was saved up, and the floor of 5 a second for the seconds it took


# ------------------------------------------------------------------ the express lane


def _same_answer(fast, slow) -> None:
    assert (fast.status, fast.headers["Content-Type"], fast.headers.get("Retry-After")) == (
        slow.status,
        slow.headers["Content-Type"],
        slow.headers.get("Retry-After"),
    )
    fast_body, slow_body = fast.get_json(), slow.get_json()
    if "error" in fast_body:  # some name a time, e.g. an example deadline
        fast_body["error"], slow_body["error"] = (re.sub(r"\d+\.\d+", "T", b["error"]) for b in (fast_body, slow_body))
    assert fast_body == slow_body


@pytest.mark.parametrize("query", ["", "?key=my_data", "?key=4", "?key=a.b~c_d-e"])
def test_a_plain_data_read_answers_the_same_through_the_express_lane_as_through_flask(gateway, query):
    client = gateway.test_client()
    behind = Client(gateway.extensions[EXPRESS].behind)
    headers = auth(client)
    slow = behind.get("/data" + query, headers=headers)  # first: a miss, read from the database
    fast = client.get("/data" + query, headers=headers)  # then a hit
    assert slow.get_json()["cached"] is False and fast.get_json()["cached"] is True
    assert slow.get_json() | {"cached": True} == fast.get_json()
    again = behind.get("/data" + query, headers=headers)
    _same_answer(fast, again)


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not.a.token"}, {"X-Request-Deadline": "soon"}], ids=str
)
def test_a_refused_data_read_is_the_same_error_through_the_lane(make_gateway, headers):
    gateway = make_gateway()
    client = gateway.test_client()
    if "X-Request-Deadline" in headers:
        headers = {**headers, **auth(client)}
    behind = Client(gateway.extensions[EXPRESS].behind)
    _same_answer(client.get("/data", headers=headers), behind.get("/data", headers=headers))


def test_a_dead_database_is_the_same_503_through_the_lane(make_gateway):
    gateway = make_gateway()
    client = gateway.test_client()
    headers = auth(client)
    fast = client.get("/data?key=1", headers=headers)
    assert fast.status_code == 503
    _same_answer(fast, Client(gateway.extensions[EXPRESS].behind).get("/data?key=1", headers=headers))


@pytest.mark.parametrize("query", ["?key=", "?key=a%2Fb", "?key=a&key=b", "?keyy=a", "?key=a+b", "?key=" + "k" * 1025])
def test_data_queries_that_are_not_plain_go_to_flask(gateway, query):
    client = gateway.test_client()
    headers = auth(client)
    seen = []
    lanes = gateway.extensions[EXPRESS]
    behind = lanes.behind
    lanes.behind = lambda environ, start: seen.append(environ["QUERY_STRING"]) or behind(environ, start)
    client.get("/data" + query, headers=headers)
    assert seen == [query[1:]]
