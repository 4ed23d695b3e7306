"""The database's records, kept in SQLite; unseen ids get a deterministic record on first read."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from ..kit.sqlite import open_database

__all__ = ["SEED_IDS", "RecordStore", "make_record"]

# The classic lab reads these ids; the seed adds numbered records next to them.
SEED_IDS = ("my_data",)


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

    def __init__(self, path: str | Path, seed_records: int = 100) -> None:
        self.path = str(path)
        self._conn = open_database(self.path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, data TEXT NOT NULL)")
            empty = self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
        if empty:
            self._seed(seed_records)

    def _seed(self, count: int) -> None:
        ids = [*SEED_IDS, *(str(n) for n in range(1, count + 1))]
        rows = [(record_id, json.dumps(make_record(record_id))) for record_id in ids]
        with self._lock:
            self._conn.executemany("INSERT OR IGNORE INTO records (id, data) VALUES (?, ?)", rows)

    def get_or_create(self, record_id: str) -> tuple[dict[str, Any], bool]:
        """Return ``(record, created)``; an id never seen before gets its record stored now."""
        with self._lock:
            row = self._conn.execute("SELECT data FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is not None:
                return json.loads(row[0]), False
            record = make_record(record_id)
            self._conn.execute("INSERT INTO records (id, data) VALUES (?, ?)", (record_id, json.dumps(record)))
            return record, True

    def put(self, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Store ``data`` as the record for ``record_id`` (its ``id`` field is set to match)."""
        record = {**data, "id": record_id}
        with self._lock:
            self._conn.execute(
                "INSERT INTO records (id, data) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
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
