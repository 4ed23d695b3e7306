"""What a gateway's HTTP API takes and gives: the models behind its /openapi.json and its 400s."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..kit.models import Added, NewBackend, PoolStatus, Queued, QueueFull, Removed, Task, TaskNotFound, TaskPayload
from ..kit.openapi import ADMIN, TOKEN, Open, Query, responses, service_api

__all__ = ["ADD", "DATA", "LONGTASK", "POOL", "PROCESS", "REMOVE", "TASK", "TOKEN_ROUTE", "DataQuery", "api"]

# A /data key is a cache key and a database id: long enough for any lab key, short enough for a URL.
MAX_KEY_CHARS = 1024

api = service_api(
    "gateway",
    "An API gateway: issues tokens, reads /data through the cache (cache-aside), balances /process over the "
    "microservices and hands /longtask to the worker. Every route but /token needs a token in Authorization.",
)


class Issued(BaseModel):
    """A token for the Authorization header of the other routes."""

    token: str


class DataQuery(Query):
    """Which record to read."""

    key: str = Field("my_data", min_length=1, max_length=MAX_KEY_CHARS, description="The record's id.")


class Served(Open):
    """Any answer a gateway passes on, with the gateway that served it."""

    gateway_id: str


class Data(Served):
    """A record, and whether it came from the cache."""

    cached: bool
    data: dict
    key: str


class ServedTask(Task):
    """A task, as the worker keeps it, with the gateway that asked."""

    gateway_id: str


class ServedQueued(Queued):
    """A task accepted by the worker, with the gateway that handed it over."""

    gateway_id: str


class ServedTaskNotFound(TaskNotFound):
    """No task has that id, with the gateway that asked."""

    gateway_id: str


# 401 without a valid token; 502/503/504 when the tier behind does not answer in time or at all.
# 429: the client's rate limit; 503: shed, no backend, or a dependency down; 504: out of time.
BEHIND = (401, 429, 502, 503, 504)
TOKEN_ROUTE = {"resp": responses(HTTP_200=Issued), "tags": ["clients"]}
DATA = {
    "query": DataQuery,
    "resp": responses((400, *BEHIND), HTTP_200=Data),
    "security": TOKEN,
    "tags": ["clients"],
}
PROCESS = {"resp": responses((400, *BEHIND), HTTP_200=Served), "security": TOKEN, "tags": ["clients"]}
LONGTASK = {
    "json": TaskPayload,
    "resp": responses((400, 413, *BEHIND), HTTP_202=ServedQueued, HTTP_429=QueueFull),
    "security": TOKEN,
    "tags": ["clients"],
}
TASK = {
    "resp": responses((400, *BEHIND), HTTP_200=ServedTask, HTTP_404=ServedTaskNotFound),
    "security": TOKEN,
    "tags": ["clients"],
}
POOL = {"resp": responses(HTTP_200=PoolStatus), "tags": ["pool"]}
ADD = {"json": NewBackend, "resp": responses((400, 401, 409, 413), HTTP_201=Added), "security": ADMIN, "tags": ["pool"]}
REMOVE = {"resp": responses((401, 404, 409), HTTP_200=Removed), "security": ADMIN, "tags": ["pool"]}
