"""One SQLite connection shared by a service's threads, opened the same way everywhere."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_database"]


def open_database(path: str | Path) -> sqlite3.Connection:
    """Open (creating its folder) the SQLite file at ``path`` in autocommit and WAL mode.

    The connection may be used from any thread; callers serialise access with their own lock.
    Every statement commits on its own, so what a service acknowledged is on disk.
    """
    path = str(path)
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn
