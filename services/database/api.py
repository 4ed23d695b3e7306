"""What the database service's HTTP API takes and gives: the models behind its /openapi.json and its 400s."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ..kit.openapi import Open, Query, service_api

__all__ = ["DbStats", "PageQuery", "Record", "RecordBody", "RecordPage", "api"]

MAX_PAGE = 1000
MAX_OFFSET = 10**9

api = service_api(
    "database",
    "Records in SQLite behind a simulated query latency and error rate. A record read that was never "
    "written is made up from its id (the same one every time); PUT stores one for good.",
)


class PageQuery(Query):
    """Which records to list."""

    limit: int = Field(100, ge=0, le=MAX_PAGE, description="Records per page.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Records to skip.")


class Record(Open):
    """A record: its id and whatever fields it was stored with (``created`` is true on a first read)."""

    id: str


class RecordBody(RootModel[dict]):
    """``PUT /db/<id>``: the record's fields, as a JSON object (its ``id`` is set from the path)."""

    model_config = ConfigDict(strict=True)


class RecordPage(BaseModel):
    """A page of records."""

    records: list[Record]
    count: int
    total: int
    offset: int


class DbStats(BaseModel):
    """Queries by operation since the service started, and records stored."""

    queries: dict[str, int]
    total_queries: int
    records: int
