"""The load of an experiment: Locust as a library, in a process of its own.

    python -m scalelab.experiments.driver PLAN.json RECORDS.csv

Locust monkey-patches the standard library for gevent as it is imported, so it runs here and
never inside the CLI or the Dash server. PLAN.json holds the load profile, the base URL, the
run's key namespace and the variant's name; the users take requests from the seeded plan in
order (plan.py) and this process writes one CSV row per request sent (records.py). On stdout
it prints one JSON object per line: ``started`` (with ``t0``, the epoch second the load
began), ``progress`` a few times a second, then ``finished``, or ``error`` and exit code 2.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

# Standard library only below these (no sockets or ssl touched before Locust patches them).
from scalelab.experiments.plan import PlannedRequest, Schedule
from scalelab.experiments.records import Record, write_csv
from scalelab.experiments.spec import LoadProfile

PROGRESS_SECONDS = 0.25
CONNECT_TIMEOUT_SECONDS = 2.0
# Once the load is over, requests still out get this long beyond their own timeout to answer.
DRAIN_MARGIN_SECONDS = 1.0
TOKEN_TIMEOUT_SECONDS = 10.0
MAX_OPEN_CONNECTIONS = 1000
EXIT_ERROR = 2


def emit(event: str, **fields: Any) -> None:
    """Print one progress line for the parent process."""
    print(json.dumps({"event": event, **fields}), flush=True)


def main(argv: list[str]) -> int:
    """Run the plan in PLAN.json against the stack and write RECORDS.csv; return the exit code."""
    if len(argv) != 2:
        print("usage: python -m scalelab.experiments.driver PLAN.json RECORDS.csv", file=sys.stderr)
        return EXIT_ERROR
    config = json.loads(Path(argv[0]).read_text())

    # Imported here, first of all that touches the network: Locust patches sockets, ssl and
    # threads for gevent on import, and nothing may have used them before.
    import gevent
    from locust.env import Environment

    from scalelab.load.users import LabUser

    profile = LoadProfile(**config["load"])
    base_url: str = config["base_url"].rstrip("/")
    variant: str = config.get("variant", "")
    try:
        _check_token(base_url)
    except (OSError, ValueError, KeyError) as exc:
        emit("error", message=f"no token from {base_url}/token: {exc}")
        return EXIT_ERROR

    records: list[Record] = []
    in_flight: dict[int, tuple[PlannedRequest, float]] = {}
    schedule: Schedule  # made just before the users start, so that t0 is when the load begins

    class PlanSource:
        """Hand out the plan's next request when it is due; keep a record of every answer."""

        def take(self, user: LabUser) -> tuple[PlannedRequest, float] | None:
            taken = schedule.take()
            if taken is not None:
                # Counted as out from now on, so that the run waits for it even before it is due.
                in_flight[taken[0].seq] = taken
            return taken

        def sent(self, user: LabUser, request: PlannedRequest, sent_at: float) -> None:
            in_flight[request.seq] = (request, sent_at)

        def answered(
            self, user: LabUser, request: PlannedRequest, sent_at: float, seconds: float, response: Any
        ) -> None:
            in_flight.pop(request.seq, None)
            records.append(_record(variant, request, sent_at, seconds * 1000, response))

    class PlanUser(LabUser):
        """A user that sends the plan's next request, as soon as it is due, until the plan says stop."""

        host = base_url
        source = PlanSource()
        namespace = config.get("namespace", "")
        network_timeout = profile.timeout
        connection_timeout = min(CONNECT_TIMEOUT_SECONDS, profile.timeout)
        open_model = profile.model == "open"
        # Open model: as many connections as requests can be out at once (rate x timeout), so none waits for one.
        out_at_once = math.ceil(profile.rate * profile.timeout)
        concurrency = min(MAX_OPEN_CONNECTIONS, max(10, out_at_once)) if open_model else 10

    environment = Environment(user_classes=[PlanUser], host=base_url)
    runner = environment.create_local_runner()
    schedule = Schedule(profile, time.time())
    # The parent stops a run early with SIGTERM: hand out nothing more, let the requests out finish.
    gevent.signal_handler(signal.SIGTERM, schedule.stop)
    emit("started", t0=schedule.start, users=profile.users)
    runner.start(profile.users, spawn_rate=profile.users)
    expected = profile.expected_seconds()
    drain_deadline: float | None = None
    while True:
        gevent.sleep(PROGRESS_SECONDS)
        now = time.time()
        errors = sum(1 for record in records if not record.ok)
        if profile.requests is not None:
            fraction = len(records) / profile.requests
        else:
            fraction = (now - schedule.start) / expected
        emit("progress", sent=schedule.taken, answered=len(records), errors=errors, fraction=round(min(fraction, 1), 4))
        if now >= schedule.end:
            schedule.stop()  # even while every user still waits on an answer
        if schedule.stopped and drain_deadline is None:
            drain_deadline = now + profile.timeout + DRAIN_MARGIN_SECONDS
        if schedule.stopped and (not in_flight or now >= (drain_deadline or now)):
            break
    runner.quit()
    # A request still out when the run ends was sent and never answered: it is lost, not dropped.
    for request, sent_at in in_flight.values():
        records.append(
            Record(
                variant,
                request.seq,
                sent_at,
                None,
                0,
                request.endpoint,
                request.key,
                error="no answer before the run ended",
            )
        )
    records.sort(key=lambda record: record.seq)
    write_csv(argv[1], records)
    emit(
        "finished",
        sent=len(records),
        answered=sum(1 for record in records if record.latency_ms is not None),
        errors=sum(1 for record in records if not record.ok),
    )
    return 0


def _check_token(base_url: str) -> None:
    """Fail fast (OSError, ValueError, KeyError) when the entry hands out no client token."""
    import urllib.request

    with urllib.request.urlopen(base_url + "/token", timeout=TOKEN_TIMEOUT_SECONDS) as response:
        json.loads(response.read())["token"]


def _record(variant: str, request: PlannedRequest, sent_at: float, latency_ms: float, response: Any) -> Record:
    """Return the record of an answered (or failed) request from Locust's response."""
    status = int(response.status_code or 0)
    if status == 0:
        return Record(
            variant, request.seq, sent_at, None, 0, request.endpoint, request.key, error=_error_text(response.error)
        )
    body: Any = {}
    try:
        body = response.json()
    except Exception:  # any body that is not JSON is simply not looked into
        body = {}
    if not isinstance(body, dict):
        body = {}
    headers = response.headers or {}
    error = ""
    if not 200 <= status < 300:
        error = str(body.get("error", "") or response.text or "")[:200]
    cached = body.get("cached")
    return Record(
        variant=variant,
        seq=request.seq,
        sent_at=sent_at,
        latency_ms=latency_ms,
        status=status,
        endpoint=request.endpoint,
        key=request.key,
        served_by=str(headers.get("X-Served-By") or ""),
        gateway_id=str(body.get("gateway_id") or ""),
        instance=str(body.get("instance") or "") if request.endpoint == "process" else "",
        service_id=str(body.get("service_id") or ""),
        cached=cached if isinstance(cached, bool) else None,
        error=error,
    )


def _error_text(error: Any) -> str:
    text = f"{type(error).__name__}: {error}" if error is not None else "no answer"
    return text[:200]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
