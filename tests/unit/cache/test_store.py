"""The cache's storage: TTL expiry, LRU eviction, and the counts behind /cache/stats."""

from __future__ import annotations

import pytest

from services.cache.store import CacheStore, EntryTooLarge, entry_size


@pytest.fixture
def store(clock):
    return CacheStore(capacity=3, default_ttl=10.0, timer=clock)


def test_get_returns_what_was_set(store):
    store.set("k", {"a": [1, 2]})
    entry = store.get("k")
    assert entry is not None
    assert entry.value == {"a": [1, 2]}
    assert entry.ttl == 10.0


def test_missing_key_is_a_miss(store):
    assert store.get("nope") is None
    assert store.stats()["misses"] == 1


def test_an_entry_lives_exactly_its_ttl(store, clock):
    store.set("k", "v")
    clock.advance(9.999)
    assert store.get("k").value == "v"
    clock.advance(0.001)
    assert store.get("k") is None


def test_expired_entry_is_never_served_and_counts_as_expired(store, clock):
    store.set("k", "v")
    clock.advance(60)
    assert store.get("k") is None
    stats = store.stats()
    assert stats["expirations"] == 1
    assert stats["evictions"] == 0
    assert stats["size"] == 0
    assert stats["misses"] == 1


def test_per_entry_ttl_overrides_the_default(store, clock):
    store.set("short", 1, ttl=1)
    store.set("long", 2, ttl=100)
    store.set("default", 3)
    clock.advance(1)
    assert store.get("short") is None
    clock.advance(9)  # 10 s in: the default TTL has run out too
    assert store.get("default") is None
    assert store.get("long").value == 2
    assert store.stats()["expirations"] == 2


def test_changing_the_default_ttl_applies_to_new_entries(store, clock):
    store.default_ttl = 2
    assert store.set("k", "v").ttl == 2
    clock.advance(2)
    assert store.get("k") is None


def test_remaining_counts_down(store, clock):
    entry = store.set("k", "v", ttl=5)
    clock.advance(2)
    assert store.remaining(entry) == pytest.approx(3)
    clock.advance(10)
    assert store.remaining(entry) == 0.0


@pytest.mark.parametrize("ttl", [0, -1])
def test_non_positive_ttl_is_refused(store, ttl):
    with pytest.raises(ValueError, match="positive"):
        store.set("k", "v", ttl=ttl)
    assert len(store) == 0


def test_overwrite_replaces_value_and_restarts_ttl(store, clock):
    store.set("k", "old")
    clock.advance(8)
    store.set("k", "new")
    clock.advance(8)
    assert store.get("k").value == "new"
    assert len(store) == 1


def test_lru_eviction_at_capacity_keeps_the_recently_used_key(store):
    for key in ("a", "b", "c"):
        store.set(key, key)
    assert store.get("a") is not None  # a is now the most recently used
    store.set("d", "d")
    assert store.get("b") is None
    assert [store.get(key).value for key in ("a", "c", "d")] == ["a", "c", "d"]
    stats = store.stats()
    assert stats["evictions"] == 1
    assert stats["expirations"] == 0
    assert stats["size"] == 3


def test_expired_entries_make_room_before_anything_is_evicted(store, clock):
    store.set("old", 1, ttl=1)
    store.set("b", 2)
    store.set("c", 3)
    clock.advance(1)
    store.set("d", 4)
    stats = store.stats()
    assert stats["evictions"] == 0
    assert stats["expirations"] == 1
    assert [store.get(key).value for key in ("b", "c", "d")] == [2, 3, 4]


def test_delete(store):
    store.set("k", "v")
    assert store.delete("k") is True
    assert store.get("k") is None
    assert store.delete("k") is False
    assert store.stats()["deletes"] == 2


def test_flush_empties_the_cache_without_counting_evictions(store):
    for key in ("a", "b", "c"):
        store.set(key, key)
    assert store.flush() == 3
    assert len(store) == 0
    assert store.get("a") is None
    assert store.flush() == 0
    assert store.stats()["evictions"] == 0


def test_stats_fields(store, clock):
    store.set("a", 1)
    store.set("b", 2, ttl=1)
    store.get("a")
    store.get("a")
    store.get("zzz")
    clock.advance(1)
    assert store.stats() == {
        "hits": 2,
        "misses": 1,
        "hit_ratio": round(2 / 3, 4),
        "sets": 2,
        "deletes": 0,
        "evictions": 0,
        "expirations": 1,
        "size": 1,
        "capacity": 3,
        "default_ttl_seconds": 10.0,
    }


def test_hit_ratio_is_none_before_any_lookup(store):
    assert store.stats()["hit_ratio"] is None


def test_capacity_must_be_positive(clock):
    with pytest.raises(ValueError, match="at least 1"):
        CacheStore(0, 10.0, timer=clock)


def test_collect_exports_the_counts(clock, registry):
    store = CacheStore(2, 10.0, timer=clock, registry=registry)
    store.set("a", 1)
    store.set("b", 2)
    store.set("c", 3)  # evicts a
    store.get("b")
    store.get("a")
    assert registry.get_sample_value("scalelab_cache_hits_total") == 1
    assert registry.get_sample_value("scalelab_cache_misses_total") == 1
    assert registry.get_sample_value("scalelab_cache_evictions_total") == 1
    assert registry.get_sample_value("scalelab_cache_sets_total") == 3
    assert registry.get_sample_value("scalelab_cache_entries") == 2
    assert registry.get_sample_value("scalelab_cache_capacity_entries") == 2


# ------------------------------------------------------------------ the byte bound


def sized(key: str, total: int) -> str:
    """Return a string value that makes the entry for ``key`` take exactly ``total`` bytes."""
    value = "x" * (total - entry_size(key, ""))
    assert entry_size(key, value) == total
    return value


def test_an_entry_counts_its_key_and_its_value_as_compact_json():
    assert entry_size("k", {"a": [1, 2]}) == 1 + len(b'{"a":[1,2]}')
    assert entry_size("ключ", "ü") == len("ключ".encode()) + len('"ü"'.encode())


def test_bytes_used_follows_sets_overwrites_deletes_and_expiry(clock, registry):
    store = CacheStore(100, 10.0, timer=clock, registry=registry, max_bytes=1000, max_entry_bytes=500)
    store.set("a", sized("a", 100))
    store.set("b", sized("b", 200), ttl=1)
    assert store.bytes_used() == 300
    store.set("a", sized("a", 50))
    assert store.bytes_used() == 250
    store.delete("a")
    assert store.bytes_used() == 200
    clock.advance(1)
    assert store.bytes_used() == 0
    store.set("c", sized("c", 70))
    assert registry.get_sample_value("scalelab_cache_bytes") == 70
    assert registry.get_sample_value("scalelab_cache_capacity_bytes") == 1000
    store.flush()
    assert store.bytes_used() == 0


def test_the_byte_bound_evicts_the_least_recently_used(clock):
    store = CacheStore(100, 10.0, timer=clock, max_bytes=1000, max_entry_bytes=500)
    for key in ("a", "b", "c"):
        store.set(key, sized(key, 300))
    assert store.get("a") is not None  # a is now the most recently used
    store.set("d", sized("d", 500))  # 1400 bytes: b and c must go, not a
    assert store.get("b") is None and store.get("c") is None
    assert [store.get(key) is not None for key in ("a", "d")] == [True, True]
    assert store.bytes_used() == 800
    assert store.stats()["evictions"] == 2
    assert len(store) == 2


def test_the_entry_bound_still_holds_with_bytes_to_spare(clock):
    store = CacheStore(2, 10.0, timer=clock, max_bytes=10_000, max_entry_bytes=1000)
    for key in ("a", "b", "c"):
        store.set(key, key)
    assert len(store) == 2
    assert store.get("a") is None
    assert store.stats()["evictions"] == 1


def test_an_entry_over_the_per_entry_limit_is_refused_and_nothing_changes(clock):
    store = CacheStore(10, 10.0, timer=clock, max_bytes=1000, max_entry_bytes=100)
    store.set("k", "old")
    store.set("k2", sized("k2", 100))  # exactly the limit fits
    with pytest.raises(EntryTooLarge, match=r"101 bytes.*at most 100") as info:
        store.set("k", sized("k", 101))
    assert (info.value.size, info.value.limit) == (101, 100)
    assert store.get("k").value == "old"
    assert store.stats()["sets"] == 2


@pytest.mark.parametrize(("max_bytes", "max_entry_bytes"), [(100, 101), (100, 0)])
def test_the_largest_entry_must_fit_in_the_cache(clock, max_bytes, max_entry_bytes):
    with pytest.raises(ValueError, match="must be at least 1 byte and fit"):
        CacheStore(10, 10.0, timer=clock, max_bytes=max_bytes, max_entry_bytes=max_entry_bytes)
