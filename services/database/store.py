"""The database's records, kept in SQLite; unseen ids get a deterministic record on first read.

Records written (``PUT``) or seeded stay. Records made for an unseen id on a read are kept
too, but only the newest ``max_generated`` of them: a load that reads a new key each time would
otherwise add a row per request forever. Dropping one loses nothing, as the next read of its
id makes the same record again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from ..kit.sqlite import open_database

__all__ = ["DEFAULT_MAX_GENERATED", "SEED_IDS", "RecordStore", "make_record"]

# The classic lab reads these ids; the seed adds numbered records next to them.
SEED_IDS = ("my_data",)
DEFAULT_MAX_GENERATED = 10_000
# Over the bound, drop this share more than needed: one prune then serves the next 1 % of new ids,
# rather than every read of a new id paying for a count and a delete.
PRUNE_SHARE = 0.01


def make_record(record_id: str) -> dict[str, Any]:
    """Return the record an id gets on first read: always the same for the same id."""
    digest = hashlib.sha256(record_id.encode("utf-8")).hexdigest()
    return {
        "id": record_id,
        "name": f"Record {record_id}",
        "value": int(digest[:8], 16) % 10_000,
        "checksum": digest[:16],
    }


class RecordStore:
    """Records by string id in one SQLite file, safe to share between threads and greenlets."""

    def __init__(self, path: str | Path, seed_records: int = 100, max_generated: int = DEFAULT_MAX_GENERATED) -> None:
        if max_generated < 0:
            raise ValueError("max_generated cannot be negative")
        self.path = str(path)
        self.max_generated = max_generated
        self._conn = open_database(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
            if "generated" not in columns:  # a file from before reads were bounded: its rows all stay
                self._conn.execute("ALTER TABLE records ADD COLUMN generated INTEGER NOT NULL DEFAULT 0")
            self._conn.execute("CREATE INDEX IF NOT EXISTS records_generated ON records (generated)")
            empty = self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
            self._generated = self._count_generated()
        if empty:
            self._seed(seed_records)

    def _seed(self, count: int) -> None:
        ids = [*SEED_IDS, *(str(n) for n in range(1, count + 1))]
        rows = [(record_id, json.dumps(make_record(record_id))) for record_id in ids]
        with self._lock:
            self._conn.executemany("INSERT OR IGNORE INTO records (id, data) VALUES (?, ?)", rows)

    def _count_generated(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM records WHERE generated = 1").fetchone()[0]

    def get_or_create(self, record_id: str) -> tuple[dict[str, Any], bool]:
        """Return ``(record, created)``; an id never seen before gets its record made (and kept, within the bound)."""
        with self._lock:
            row = self._conn.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is not None:
                return json.loads(row[0]), False
            record = make_record(record_id)
            if self.max_generated == 0:
                return record, True
            self._conn.execute(
                "INSERT INTO records (id, data, generated) VALUES (?, ?, 1)", (record_id, json.dumps(record))
            )
            self._generated += 1
            if self._generated > self.max_generated:
                self._drop_oldest_generated()
            return record, True

    def _drop_oldest_generated(self) -> None:
        # The count kept in memory may be off when another connection writes the file: count again.
        count = self._count_generated()
        if count > self.max_generated:
            keep = self.max_generated - int(self.max_generated * PRUNE_SHARE)
            self._conn.execute(
                "DELETE FROM records WHERE rowid IN"
                " (SELECT rowid FROM records WHERE generated = 1 ORDER BY rowid LIMIT ?)",
                (count - keep,),
            )
            count = keep
        self._generated = count

    def generated(self) -> int:
        """Return how many records made on a read are kept."""
        with self._lock:
            return self._count_generated()

    def put(self, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store ``data`` as the record for ``record_id`` (its ``id`` field is set to match); it stays."""
        record = {**data, "id": record_id}
        with self._lock:
            self._conn.execute(
                "INSERT INTO records (id, data) VALUES (?, ?)"
                " ON CONFLICT(id) DO UPDATE SET data = excluded.data, generated = 0",
                (record_id, json.dumps(record)),
            )
        return record

    def list(self, limit: int, offset: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records ordered by id, skipping ``offset``."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT data FROM records ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def count(self) -> int:
        """Return how many records there are."""
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._conn.close()
