"""Database service settings (environment variables and their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..kit import ServiceSettings, setting
from .store import DEFAULT_MAX_GENERATED


@dataclass
class DatabaseConfig(ServiceSettings):
    """Settings of the database service."""

    port: int = setting(5002, "DATABASE_PORT", "Port of the database service.")
    path: str = setting("scalelab-data/database.sqlite3", "DATABASE_PATH", "SQLite file; seeded when empty.")
    seed_records: int = setting(100, "DATABASE_SEED_RECORDS", "Numbered records (1..N) created at first start.")
    max_generated_records: int = setting(
        DEFAULT_MAX_GENERATED,
        "DATABASE_MAX_GENERATED_RECORDS",
        "Records made on the first read of an unseen id that are kept (the oldest go first; "
        "a later read makes the same record again); 0 keeps none. Written and seeded records always stay.",
    )
    latency_ms: float = setting(50.0, "DATABASE_LATENCY_MS", "Simulated time per query, in milliseconds.")
    jitter_ms: float = setting(10.0, "DATABASE_JITTER_MS", "Random +/- spread added to the latency.")
    error_rate: float = setting(0.0, "DATABASE_ERROR_RATE", "Share of queries that fail with 503 (0..1).")
