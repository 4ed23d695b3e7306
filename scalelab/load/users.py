"""The lab's one simulated user: takes a token, then sends the requests its source hands out.

Where requests come from is the user's :class:`RequestSource`: the live engine draws them from
the mix on the swarm form (locustfile.py); an experiment takes them from its seeded plan, each
when it is due (experiments/driver.py). Both send, label and time them the same way.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import gevent
from locust import FastHttpUser, constant, task
from locust.exception import StopUser

from scalelab.load.mix import Request

__all__ = ["LabUser", "RequestSource"]

TOKEN_ROUTE = "/token"


class RequestSource(Protocol):
    """Hands a user its requests and hears how each one went."""

    def take(self, user: LabUser) -> tuple[Request, float] | None:
        """Return the next request and the epoch second it is due, or None when the user should stop."""

    def sent(self, user: LabUser, request: Request, sent_at: float) -> None:
        """Note that ``request`` goes out now (at ``sent_at``)."""

    def answered(self, user: LabUser, request: Request, sent_at: float, seconds: float, response: Any) -> None:
        """Note the answer (or failure) of a request sent at ``sent_at`` that took ``seconds``."""


class LabUser(FastHttpUser):
    """One client of the lab. Subclasses (or the locustfile) set :attr:`source` and :attr:`namespace`."""

    abstract = True
    wait_time = constant(0)  # the source says when each request is due
    source: RequestSource
    namespace: str = ""  # prefixes new keys, so they miss in every run
    # Open model: send each request when it is due without waiting for the answers before it, and time
    # it from then. A closed-model user waits, so a stall holds back the requests behind it and hides
    # their wait from the latencies (coordinated omission).
    open_model: bool = False

    def on_start(self) -> None:
        self.token = ""
        self.refresh_token()

    def refresh_token(self) -> None:
        """Get a client token from the entry's /token (failures show in the statistics)."""
        with self.client.get(TOKEN_ROUTE, name=TOKEN_ROUTE, catch_response=True) as response:
            if response.status_code == 200:
                self.token = response.json()["token"]
            else:
                response.failure(f"no token: {response.status_code}")

    @task
    def send_next(self) -> None:
        taken = self.source.take(self)
        if taken is None:
            raise StopUser()
        request, due = taken
        delay = due - time.time()
        if delay > 0:
            gevent.sleep(delay)
        if self.open_model:
            gevent.spawn(self.send, request, due)  # the next one goes out when due, answered or not
        else:
            self.send(request, None)

    def send(self, request: Request, scheduled: float | None) -> None:
        """Send ``request``; time it from ``scheduled`` (open model) or from when it goes out (closed)."""
        sent_at = time.time() if scheduled is None else scheduled
        self.source.sent(self, request, sent_at)
        started = time.perf_counter()
        response = self.client.request(
            request.method,
            request.wire_path(self.namespace),
            name=request.label,
            headers={"Authorization": self.token},
            json=request.body,
            # Tells the request listeners this one is timed from when it was due (by the source), not sent.
            context={"model": "open"} if scheduled is not None else {},
        )
        seconds = time.perf_counter() - started if scheduled is None else time.time() - scheduled
        self.source.answered(self, request, sent_at, seconds, response)
        if response.status_code == 401:
            self.refresh_token()
