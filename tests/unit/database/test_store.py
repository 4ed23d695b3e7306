"""The database's SQLite record store: seeding, deterministic records, writes, paging."""

from __future__ import annotations

import sqlite3

import pytest

from services.database.store import SEED_IDS, RecordStore, make_record


@pytest.fixture
def store(tmp_path):
    store = RecordStore(tmp_path / "db.sqlite3", seed_records=5)
    yield store
    store.close()


def test_a_new_store_is_seeded(store):
    assert store.count() == len(SEED_IDS) + 5
    for record_id in ("my_data", "1", "5"):
        record, created = store.get_or_create(record_id)
        assert created is False
        assert record == make_record(record_id)
    assert store.count() == len(SEED_IDS) + 5


def test_seeded_record_shape():
    record = make_record("my_data")
    assert record["id"] == "my_data"
    assert record["name"] == "Record my_data"
    assert 0 <= record["value"] < 10_000
    assert len(record["checksum"]) == 16


def test_unseen_id_is_created_once(store):
    record, created = store.get_or_create("brand-new")
    assert created is True
    assert record["id"] == "brand-new"
    assert store.count() == len(SEED_IDS) + 6
    again, created_again = store.get_or_create("brand-new")
    assert created_again is False
    assert again == record


def test_the_same_id_gets_the_same_record_in_separate_stores(tmp_path):
    first = RecordStore(tmp_path / "one.sqlite3", seed_records=0)
    second = RecordStore(tmp_path / "two" / "nested.sqlite3", seed_records=0)
    try:
        assert first.get_or_create("unseen/key é")[0] == second.get_or_create("unseen/key é")[0]
    finally:
        first.close()
        second.close()


def test_different_ids_get_different_records():
    assert make_record("a")["checksum"] != make_record("b")["checksum"]


def test_put_stores_the_record_with_its_id(store):
    stored = store.put("7", {"name": "changed", "id": "ignored", "tags": ["x"]})
    assert stored == {"name": "changed", "id": "7", "tags": ["x"]}
    assert store.get_or_create("7") == (stored, False)
    assert store.put("7", {"v": 2}) == {"v": 2, "id": "7"}
    assert store.get_or_create("7")[0] == {"v": 2, "id": "7"}


def test_records_survive_reopening_without_reseeding(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = RecordStore(path, seed_records=3)
    store.put("kept", {"v": 1})
    store.close()
    reopened = RecordStore(path, seed_records=50)
    try:
        assert reopened.count() == len(SEED_IDS) + 3 + 1
        assert reopened.get_or_create("kept") == ({"v": 1, "id": "kept"}, False)
    finally:
        reopened.close()


def test_list_pages_in_id_order(store):
    everything = store.list(limit=100, offset=0)
    ids = [record["id"] for record in everything]
    assert ids == sorted(ids)
    assert len(ids) == store.count()
    assert store.list(limit=2, offset=1) == everything[1:3]
    assert store.list(limit=10, offset=len(ids)) == []
    assert store.list(limit=0, offset=0) == []


def test_in_memory_store():
    store = RecordStore(":memory:", seed_records=2)
    try:
        assert store.count() == len(SEED_IDS) + 2
    finally:
        store.close()


# ------------------------------------------------------------------ the bound on records made by reads


def test_records_made_by_reads_are_bounded_oldest_first(tmp_path):
    store = RecordStore(tmp_path / "db.sqlite3", seed_records=2, max_generated=3)
    try:
        store.put("written", {"v": 1})
        for n in range(10):
            record, created = store.get_or_create(f"new-{n}")
            assert created is True
            assert record == make_record(f"new-{n}")
        assert store.generated() == 3
        assert store.count() == len(SEED_IDS) + 2 + 1 + 3  # seeds and writes stay
        assert store.get_or_create("new-9") == (make_record("new-9"), False)  # the newest are kept
        assert store.get_or_create("written") == ({"v": 1, "id": "written"}, False)
        assert store.get_or_create("1")[1] is False
        # a dropped one comes back the same when read again
        assert store.get_or_create("new-0") == (make_record("new-0"), True)
    finally:
        store.close()


def test_a_written_record_is_never_dropped_even_if_a_read_made_it(tmp_path):
    store = RecordStore(tmp_path / "db.sqlite3", seed_records=0, max_generated=2)
    try:
        store.get_or_create("kept")
        store.put("kept", {"v": 2})
        for n in range(5):
            store.get_or_create(f"new-{n}")
        assert store.get_or_create("kept") == ({"v": 2, "id": "kept"}, False)
        assert store.generated() == 2
    finally:
        store.close()


def test_max_generated_zero_stores_no_read(tmp_path):
    store = RecordStore(tmp_path / "db.sqlite3", seed_records=1, max_generated=0)
    try:
        for _ in range(3):
            assert store.get_or_create("unseen") == (make_record("unseen"), True)
        assert store.count() == len(SEED_IDS) + 1
    finally:
        store.close()


def test_a_large_bound_prunes_a_little_below_it_in_one_go(tmp_path):
    store = RecordStore(":memory:", seed_records=0, max_generated=200)
    try:
        for n in range(201):
            store.get_or_create(f"new-{n}")
        assert store.generated() == 198  # 1 % under the bound: the next prune is 1 % of new ids away
        assert store.get_or_create("new-200")[1] is False
        assert store.get_or_create("new-3")[1] is False and store.get_or_create("new-2")[1] is True
    finally:
        store.close()


def test_a_file_from_before_the_bound_keeps_its_rows(tmp_path):
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE records (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
    old.execute("INSERT INTO records VALUES ('legacy', '{\"id\": \"legacy\"}')")
    old.commit()
    old.close()
    store = RecordStore(path, seed_records=5, max_generated=1)
    try:
        store.get_or_create("a")
        store.get_or_create("b")
        assert store.get_or_create("legacy") == ({"id": "legacy"}, False)
        assert store.count() == 2
    finally:
        store.close()
