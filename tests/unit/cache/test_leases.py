"""Leases on missing keys: one filler per key, waiting for the others, no stale fill after a delete."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from prometheus_client import generate_latest

from services.cache.app import create_app
from services.cache.leases import Leases

MISSING = lambda: None  # noqa: E731 -- the store's answer for a key it does not hold


def test_the_first_miss_gets_the_lease_and_the_others_learn_it_is_being_filled(clock):
    leases = Leases(2.0, 100, clock)
    entry, token = leases.acquire("k", MISSING)
    assert entry is None and token
    assert leases.acquire("k", MISSING) == (None, None)
    assert leases.acquire("other", MISSING)[1]  # leases are per key


def test_a_key_that_is_cached_gets_no_lease_but_its_entry(clock):
    leases = Leases(2.0, 100, clock)
    assert leases.acquire("k", lambda: "entry") == ("entry", None)
    assert leases.outstanding() == 0


def test_a_fill_with_the_live_lease_stores_and_ends_the_lease(clock):
    leases = Leases(2.0, 100, clock)
    _, token = leases.acquire("k", MISSING)
    stored = []
    assert leases.fill("k", token, lambda: stored.append("v") or "entry") == (True, "entry")
    assert stored == ["v"]
    assert leases.acquire("k", MISSING)[1] is not None  # the next miss (after an eviction, say) may fill again


@pytest.mark.parametrize("spoil", ["expire", "invalidate", "clear", "wrong token"])
def test_a_fill_whose_lease_is_gone_stores_nothing(clock, spoil):
    leases = Leases(2.0, 100, clock)
    _, token = leases.acquire("k", MISSING)
    if spoil == "expire":
        clock.advance(2.0)
    elif spoil == "invalidate":
        leases.invalidate("k")
    elif spoil == "clear":
        leases.clear()
    else:
        token = token + "x"
    stored = []
    assert leases.fill("k", token, lambda: stored.append("v")) == (False, None)
    assert stored == []


def test_an_expired_lease_goes_to_the_next_reader(clock):
    leases = Leases(2.0, 100, clock)
    _, first = leases.acquire("k", MISSING)
    clock.advance(2.5)  # its holder died
    _, second = leases.acquire("k", MISSING)
    assert second and second != first


def test_leases_beyond_the_limit_drop_the_oldest(clock):
    leases = Leases(60.0, 3, clock)
    tokens = [leases.acquire(f"k{n}", MISSING)[1] for n in range(5)]
    assert leases.outstanding() == 3
    assert leases.fill("k0", tokens[0], lambda: "e") == (False, None)
    assert leases.fill("k4", tokens[4], lambda: "e") == (True, "e")


# ------------------------------------------------------------------ over HTTP


@pytest.fixture
def client(registry):
    return create_app({"admin_token": "t"}, registry=registry).test_client()


def url(key: str, lease: bool = False) -> str:
    return "/cache/" + quote(key, safe="") + ("?lease=true" if lease else "")


def test_a_leased_miss_names_its_filler(client):
    first = client.get(url("k", lease=True))
    assert first.status_code == 404 and first.get_json()["lease"] and first.get_json()["filling"] is False
    second = client.get(url("k", lease=True))
    assert second.status_code == 404 and second.get_json()["lease"] is None and second.get_json()["filling"] is True
    plain = client.get(url("k"))
    assert plain.status_code == 404 and "lease" not in plain.get_json()


def test_the_filler_stores_with_its_lease_and_the_others_then_read_the_value(client):
    token = client.get(url("k", lease=True)).get_json()["lease"]
    assert client.post(url("k"), json={"value": {"a": 1}, "lease": token}).status_code == 201
    assert client.get(url("k", lease=True)).get_json()["value"] == {"a": 1}


def test_a_delete_while_the_filler_reads_refuses_its_stale_value(client, registry):
    token = client.get(url("k", lease=True)).get_json()["lease"]
    client.delete(url("k"))  # the record changed after the filler read it
    refused = client.post(url("k"), json={"value": "stale", "lease": token})
    assert refused.status_code == 409 and refused.get_json()["stored"] is False
    assert "no longer live" in refused.get_json()["error"]
    assert client.get(url("k")).status_code == 404
    text = generate_latest(registry).decode()
    assert 'scalelab_cache_leases_total{result="refused"} 1.0' in text
    assert 'scalelab_cache_leases_total{result="granted"} 1.0' in text


def test_a_flush_ends_every_lease(client):
    token = client.get(url("k", lease=True)).get_json()["lease"]
    client.post("/cache/flush")
    assert client.post(url("k"), json={"value": 1, "lease": token}).status_code == 409


def test_the_lease_works_with_the_key_in_the_query_too(client):
    first = client.get("/cache", query_string={"key": "stats", "lease": "true"})
    assert first.status_code == 404 and first.get_json()["lease"]


def test_the_lease_knob_changes_how_long_a_lease_lasts(client):
    response = client.put("/control", json={"lease_seconds": 0.05}, headers={"X-Admin-Token": "t"})
    assert response.status_code == 200
    assert client.get("/control", headers={"X-Admin-Token": "t"}).get_json()["knobs"]["lease_seconds"]["value"] == 0.05


@pytest.mark.parametrize("lease", [123, "", "x" * 65, ["t"]])
def test_a_lease_that_is_no_token_is_a_400_naming_the_field(client, lease):
    response = client.post(url("k"), json={"value": 1, "lease": lease})
    assert response.status_code == 400 and response.get_json()["field"] == "lease"
