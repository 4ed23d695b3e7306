"""The runner with its load driver (Locust in a child process) against a canned balancer on 127.0.0.1."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from scalelab.experiments import ExperimentError, Target, list_experiments, run_experiment
from scalelab.experiments.plan import sequence
from scalelab.experiments.records import read_csv
from scalelab.experiments.spec import parse
from tests.unit.standins import CannedServer, closed_port


@pytest.fixture
def balancer(server: CannedServer) -> CannedServer:
    """A canned load balancer: a token, then /data and /process answers."""
    server.json("GET", "/token", {"token": "tok"})
    server.json("GET", "/data", {"cached": True, "gateway_id": "1", "key": "k"})
    server.json("GET", "/process", {"service_id": "2", "instance": "microservice-2", "gateway_id": "1"})
    return server


def experiment(**load: Any) -> Any:
    return parse(
        {
            "name": "tiny",
            "description": "a small test load",
            "load": {"users": 3, "seed": 5, "mix": {"data_hot": 1, "data_new": 1, "process": 1}, **load},
            "checks": [{"metric": "error_ratio", "max": 0}, {"metric": "lost", "max": 0}],
        },
        "tiny.yaml",
    )


def test_exactly_n_requests_follow_the_plan_and_are_recorded(balancer: CannedServer, tmp_path: Path) -> None:
    tiny = experiment(requests=30)
    progress: list[tuple[float, str]] = []
    result = run_experiment(tiny, Target(balancer.url), tmp_path, lambda f, m: progress.append((f, m)), False)

    assert result.passed, result.failed
    assert result.directory.parent == tmp_path and result.directory.name.endswith("-tiny")
    assert result.report.exists() and (result.directory / "summary.json").exists()
    records = read_csv(result.directory / "requests.csv")
    planned = sequence(tiny.load)
    assert [(r.seq, r.endpoint, r.key) for r in records] == [(p.seq, p.endpoint, p.key) for p in planned]
    assert all(r.status == 200 and r.latency_ms is not None and r.sent_at > 0 for r in records)
    assert {r.instance for r in records if r.endpoint == "process"} == {"microservice-2"}
    sent = [seen for seen in balancer.seen if seen.path != "/token"]
    assert len(sent) == 30
    assert all(seen.headers["Authorization"] == "tok" for seen in sent)
    # New keys go out under the run's namespace, hot keys as planned.
    namespace = result.summary["variants"][0]["key_namespace"]
    wire_keys = {seen.query["key"][0] for seen in sent if "key" in seen.query}
    assert {f"{namespace}.{p.key}" for p in planned if p.endpoint == "data_new"} <= wire_keys
    assert {p.key for p in planned if p.endpoint == "data_hot"} <= wire_keys
    fractions = [fraction for fraction, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[-1][1] == "done: passed"


def test_a_rate_over_a_duration_sends_rate_times_duration_requests(balancer: CannedServer, tmp_path: Path) -> None:
    result = run_experiment(experiment(duration=1.0, rate=20), Target(balancer.url), tmp_path, progress_bar=False)
    records = read_csv(result.directory / "requests.csv")
    assert len(records) == 20
    offsets = [r.sent_at - records[0].sent_at for r in records]
    assert offsets[-1] == pytest.approx(19 / 20, abs=0.15)


def test_an_unreachable_balancer_is_an_experiment_error(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"no token from http://127\.0\.0\.1:\d+/token"):
        run_experiment(experiment(requests=5), Target(f"http://127.0.0.1:{closed_port()}"), tmp_path, None, False)


def test_changing_the_stack_needs_the_stack(tmp_path: Path) -> None:
    changing = parse({"load": {"requests": 5}, "setup": [{"kill": "gateway-2"}]}, "c.yaml")
    with pytest.raises(ExperimentError, match="needs the stack's orchestrator and admin token"):
        run_experiment(changing, Target("http://127.0.0.1:1"), tmp_path, None, False)


def test_a_cancelled_run_fails_and_says_so(balancer: CannedServer, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    result = run_experiment(experiment(requests=5), Target(balancer.url), tmp_path, None, False, cancel)
    assert not result.passed
    assert "cancelled before variant 'default'" in result.summary["notes"]
    assert [check.label for check in result.failed] == ["error_ratio <= 0", "lost <= 0", "run completed"]


def test_the_built_in_experiments_are_listed_with_their_description() -> None:
    listed = dict(list_experiments())
    assert len(listed) == 13 and "the classic caching_test.py" in listed["caching"]
