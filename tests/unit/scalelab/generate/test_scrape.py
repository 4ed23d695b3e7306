"""The Prometheus configuration and rules: generated files are current, promtool accepts them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from scalelab.generate.scrape import (
    TARGETS_FILE,
    compose_instances,
    compose_self_address,
    find_prometheus,
    prometheus_config,
    targets,
    write_config,
)
from scalelab.topology import lab_ports

from ...support import promtool_path

REPO_PROMETHEUS_DIR = Path(__file__).resolve().parents[4] / "prometheus"
PORTS = lab_ports()


def test_committed_compose_config_is_what_the_generator_makes(tmp_path: Path) -> None:
    write_config(tmp_path, compose_instances(), compose_self_address())
    for name in ("prometheus.yml", TARGETS_FILE):
        assert (REPO_PROMETHEUS_DIR / name).read_text() == (tmp_path / name).read_text(), (
            f"prometheus/{name} is stale: run python -m scalelab.generate.scrape"
        )


def test_every_instance_is_a_target_with_its_name() -> None:
    groups = json.loads((REPO_PROMETHEUS_DIR / TARGETS_FILE).read_text())
    by_instance = {group["labels"]["instance"]: group for group in groups}
    assert set(by_instance) == {*PORTS, "loadgen", "dashboard"}
    assert by_instance["gateway-2"]["targets"] == [f"gateway-2:{PORTS['gateway-2']}"]
    assert by_instance["gateway-2"]["labels"]["service"] == "gateway"
    assert by_instance["loadgen"] == {
        "targets": ["loadgen:8089"],
        "labels": {"instance": "loadgen", "service": "loadgen"},
    }
    assert by_instance["dashboard"] == {
        "targets": ["dashboard:8050"],
        "labels": {"instance": "dashboard", "service": "dashboard"},
    }


def test_scrape_interval_shows_failover_at_second_resolution() -> None:
    config = prometheus_config("localhost:9090")
    assert config["global"]["scrape_interval"] == "1s"
    assert config["global"]["evaluation_interval"] == "1s"


def test_local_targets_use_local_ports() -> None:
    groups = targets([("gateway-1", "gateway", "127.0.0.1:5000")])
    assert groups == [{"targets": ["127.0.0.1:5000"], "labels": {"instance": "gateway-1", "service": "gateway"}}]


def test_find_prometheus_prefers_the_environment_variable(tmp_path: Path) -> None:
    assert find_prometheus({"SCALELAB_PROMETHEUS_BIN": "/opt/prom/prometheus", "PATH": ""}) == "/opt/prom/prometheus"
    assert find_prometheus({"PATH": str(tmp_path)}) is None
    binary = tmp_path / "prometheus"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_prometheus({"PATH": str(tmp_path)}) == str(binary)


def test_promtool_checks_the_config_and_rules() -> None:
    promtool = promtool_path()
    config = subprocess.run(
        [promtool, "check", "config", str(REPO_PROMETHEUS_DIR / "prometheus.yml")], capture_output=True, text=True
    )
    assert config.returncode == 0, config.stdout + config.stderr
    rules = sorted(str(p) for p in (REPO_PROMETHEUS_DIR / "rules").glob("*.yml"))
    checked = subprocess.run([promtool, "check", "rules", *rules], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in (REPO_PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    result = subprocess.run([promtool_path(), "test", "rules", *tests], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_summary_and_a_severity() -> None:
    groups = yaml.safe_load((REPO_PROMETHEUS_DIR / "rules/alerts.yml").read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"]]
    names = {rule["alert"] for rule in alerts}
    assert {"ScaleLabInstanceDown", "ScaleLabBackendDown", "ScaleLabHighErrorRatio", "ScaleLabSlowRequests",
            "ScaleLabCacheHitRatioCollapsed", "ScaleLabQueueGrowing"} <= names  # fmt: skip
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
