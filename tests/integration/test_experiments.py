"""Experiments against the real stack: every built-in passes its checks; files, thresholds and seeds work.

Every run goes through the real entry point (``scalelab experiment``) with short loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from scalelab.cli import exitcodes
from scalelab.cli.main import cli
from scalelab.experiments.records import read_csv
from scalelab.experiments.spec import BUILTIN_DIR

from .conftest import REQUEST_TIMEOUT, Stack

REPO = Path(__file__).resolve().parents[2]
# Shorter loads than the defaults, so that the whole file stays within a few minutes on two cores.
SHORTER = {"scaling": ["load.duration=3"], "algorithms": ["load.duration=3"], "load-balancing": ["load.requests=60"]}
CLASSIC_SECONDS = 60


def experiment(stack: Stack, results: Path, *args: str) -> int:
    """Run ``scalelab experiment ARGS`` against the test stack; return its exit code."""
    return cli(["--run-dir", str(stack.orchestrator.run_dir), "experiment", *args, "--results-dir", str(results)])


def only_run(results: Path) -> Path:
    [directory] = [path for path in results.iterdir() if path.is_dir()]
    return directory


def summary(directory: Path) -> dict:
    return json.loads((directory / "summary.json").read_text())


def failover_is_timed_from_the_pools_own_timestamps(result: dict) -> None:
    [variant] = result["variants"]
    events = {event["instance"]: event for event in variant["failover"]}
    assert set(events) == {"gateway-2", "microservice-2"}
    for event in events.values():
        # A killed process refuses connections: the pools notice well within the health-check bound.
        assert 0 < event["detected_after"] <= event["predicted"] == 1.1
        assert event["failed"] == 0 and event["retried"] is not None
        # From the start command: the process starts, passes its pools' checks, and answers again.
        assert 0 < event["process_up_after"] <= event["serving_after"] < 10
        assert 0 < event["marked_up_after"] < 10
    labels = [action["label"] for action in variant["timeline"]]
    assert labels == ["kill gateway-2", "start gateway-2", "kill microservice-2", "start microservice-2"]


def coalescing_saves_database_reads(result: dict) -> None:
    off, per_gateway, across = (variant["metrics"]["database_reads"] for variant in result["variants"])
    assert off > per_gateway >= across > 0
    assert across == 3  # one read per key, whichever gateway asked


def both_models_met_the_stall(result: dict) -> None:
    closed, opened = (variant["metrics"] for variant in result["variants"])
    # The closed model's users were held by the stall too: its slowest requests took it all ...
    assert closed["max_ms"] > 1500 and opened["max_ms"] > 1500
    # ... but only the open model's percentiles show it.
    assert opened["p99_ms"] > 10 * closed["p99_ms"]


def shedding_refused_early_and_kept_the_admitted_fast(result: dict) -> None:
    unlimited, fixed, adaptive = (variant["metrics"] for variant in result["variants"])
    for limited in (fixed, adaptive):
        # About half the load is over capacity: refused at once rather than queued.
        assert limited["shed"] >= 0.3 * limited["requests"]
        assert limited["ok_p99_ms"] * 2 < unlimited["ok_p99_ms"]
        assert limited["lost"] == 0


def every_scaling_decision_is_on_the_timeline(result: dict) -> None:
    [variant] = result["variants"]
    labels = [action["label"] for action in variant["timeline"]]
    # Out during the step (to 5 or 6 at once), then in one at a time back to 3.
    assert labels[0].startswith("scale-out microservice 3→") and labels[-1] == "scale-in microservice 4→3"
    assert all(action["error"] == "" and action["offset"] is not None for action in variant["timeline"])
    assert any(note.startswith("autoscaler: microservice on in_flight") for note in variant["notes"])


# What some experiments must show beyond their own checks.
def every_fault_row_says_what_it_expects(result: dict) -> None:
    # One row per instance and fault, each with its expected outcome beside the measured one.
    assert len(result["expected"]) == len(result["variants"]) >= 20
    assert "single point of failure" in result["expected"]["kill load-balancer"]


MORE = {
    "failover": failover_is_timed_from_the_pools_own_timestamps,
    "stampede": coalescing_saves_database_reads,
    "coordinated-omission": both_models_met_the_stall,
    "load-shedding": shedding_refused_early_and_kept_the_admitted_fast,
    "autoscaling": every_scaling_decision_is_on_the_timeline,
    "fault-matrix": every_fault_row_says_what_it_expects,
}


def snapshot(stack: Stack) -> tuple[dict[str, str], dict[str, dict[str, object]]]:
    """Return every instance's process state and the knobs of the services the experiments change."""
    states = {info.name: info.state for info in stack.orchestrator.instances()}
    knobs = {}
    for info in stack.services():
        if info.service in ("gateway", "microservice", "load-balancer", "database", "worker"):
            response = requests.get(stack.url(info.name) + "/control", headers=stack.admin(), timeout=REQUEST_TIMEOUT)
            knobs[info.name] = {name: knob["value"] for name, knob in response.json()["knobs"].items()}
    return states, knobs


@pytest.mark.parametrize("name", sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml")))
def test_every_built_in_experiment_passes_its_checks(
    healthy_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    sets = [arg for value in SHORTER.get(name, []) for arg in ("--set", value)]
    before = snapshot(healthy_stack)
    code = experiment(healthy_stack, tmp_path, name, *sets)
    out = capsys.readouterr().out
    assert code == exitcodes.OK, out
    run = only_run(tmp_path)
    assert run.name.endswith(f"-{name}")
    result = summary(run)
    assert result["passed"] and result["failed_checks"] == []
    assert f"PASSED: all {len(result['checks'])} checks. Report: {run / 'report.html'}" in out
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "PASSED" in html
    assert read_csv(run / "requests.csv")
    if name in MORE:
        MORE[name](result)
    # The stack is as the experiment found it: the same instances, running, with the same knobs.
    assert snapshot(healthy_stack) == before


def test_an_edited_copy_of_an_experiment_runs_as_edited(healthy_stack: Stack, tmp_path: Path) -> None:
    document = yaml.safe_load((BUILTIN_DIR / "load-balancing.yaml").read_text())
    document["name"] = "my-copy"
    document["load"].update(requests=12, users=3, mix={"process": 100})
    document["checks"].append({"metric": "instance_imbalance", "max": 0.2})
    copy = tmp_path / "my-copy.yaml"
    copy.write_text(yaml.safe_dump(document))
    assert experiment(healthy_stack, tmp_path / "results", str(copy)) == exitcodes.OK
    run = only_run(tmp_path / "results")
    assert run.name.endswith("-my-copy")
    records = read_csv(run / "requests.csv")
    assert len(records) == 12 and {record.endpoint for record in records} == {"process"}
    assert {record.instance for record in records} == {"microservice-1", "microservice-2", "microservice-3"}
    result = summary(run)
    assert result["source"] == str(copy)
    assert "instance_imbalance <= 0.2" in [check["label"] for check in result["checks"]]


def test_a_failing_threshold_exits_non_zero_and_the_report_names_the_check(
    healthy_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = experiment(
        healthy_stack, tmp_path, "load-balancing", "--set", "load.requests=20", "--set", "checks.3.max=0.001"
    )
    out = capsys.readouterr().out
    assert code == exitcodes.CHECKS_FAILED == 3
    run = only_run(tmp_path)
    assert f"FAILED: 1 of 4 checks (p99_ms <= 0.001). Report: {run / 'report.html'}" in out
    assert "  FAILED  p99_ms <= 0.001: p99_ms was" in out
    html = (run / "report.html").read_text()
    assert "FAILED: <b>p99_ms &lt;= 0.001</b>: p99_ms was" in html and "above the maximum 0.001" in html
    assert summary(run)["failed_checks"] == ["p99_ms <= 0.001"]


def test_the_same_seed_gives_the_same_request_sequence(healthy_stack: Stack, tmp_path: Path) -> None:
    mixed = ["--set", "load.requests=40", "--set", "load.users=4", "--set", "checks=[]",
             "--set", "load.mix={data_hot: 40, data_new: 30, process: 30}"]  # fmt: skip

    def sequence(seed: int, results: Path) -> list[tuple[int, str, str]]:
        assert experiment(healthy_stack, results, "load-balancing", *mixed, "--seed", str(seed)) == 0
        run = only_run(results)
        assert summary(run)["seed"] == seed
        return [(record.seq, record.endpoint, record.key) for record in read_csv(run / "requests.csv")]

    first, again, other = sequence(11, tmp_path / "a"), sequence(11, tmp_path / "b"), sequence(12, tmp_path / "c")
    assert len(first) == 40 and {endpoint for _, endpoint, _ in first} == {"data_hot", "data_new", "process"}
    assert first == again
    assert first != other


def test_the_classic_script_keeps_its_command_line_and_png(healthy_stack: Stack, tmp_path: Path) -> None:
    script = REPO / "tests" / "classic" / "microservice_routing_test.py"
    completed = subprocess.run(
        [sys.executable, str(script), "--requests", "20", "--concurrency", "5", "--url", healthy_stack.lb,
         "--run-dir", str(healthy_stack.orchestrator.run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=CLASSIC_SECONDS,
        env={**os.environ, "SCALELAB_ORCHESTRATOR": "local"},
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (tmp_path / "results" / "microservice_distribution.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "results" / "response_time_histogram.png").exists()
    [run] = (tmp_path / "results").glob("*-microservice-routing")
    assert summary(run)["variants"][0]["metrics"]["requests"] == 20
    assert "microservice-2:" in completed.stdout
