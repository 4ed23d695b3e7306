"""The swarm stack file: what `docker stack deploy` gets, derived from the catalog."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scalelab import catalog
from scalelab.generate.compose import COMPOSE_SECRETS
from scalelab.generate.stack import (
    LABEL_NUMBERED,
    LABEL_PORT,
    LABEL_SERVICE,
    TASK_SLOT,
    numbered,
    stack_document,
    stack_prometheus_config,
    write_stack,
)

from ...support import promtool_path


@pytest.fixture
def document(tmp_path: Path) -> dict:
    return stack_document(tmp_path)


def test_every_catalog_service_is_one_swarm_service_with_its_instances_as_replicas(document: dict) -> None:
    assert list(document["services"]) == [svc.name for svc in catalog.SERVICES]
    for svc in catalog.SERVICES:
        assert document["services"][svc.name]["deploy"]["replicas"] == len(catalog.instance_names(svc))


def test_a_task_takes_its_instance_name_and_id_from_its_slot(document: dict) -> None:
    for svc in catalog.lab_services():
        env = document["services"][svc.name]["environment"]
        expected = f"{svc.name}-{TASK_SLOT}" if numbered(svc) else svc.name
        assert env["SCALELAB_INSTANCE"] == expected
        if svc.id_env:
            assert env[svc.id_env] == TASK_SLOT
        assert env[svc.port_env] == str(svc.ports[0])  # every task of a service on its first classic port


def test_pool_holders_find_their_backends_through_the_swarm_dns_not_a_list(document: dict) -> None:
    for balanced, pool in catalog.pool_holders():
        env = document["services"][pool.holder]["environment"]
        assert env[pool.discover_env] == f"tasks.{balanced.name}:{balanced.ports[0]}"
        assert pool.members_env not in env


def test_limits_come_from_the_catalog(document: dict) -> None:
    for svc in catalog.SERVICES:
        limits = document["services"][svc.name]["deploy"].get("resources", {}).get("limits", {})
        assert limits.get("cpus") == (None if svc.cpus is None else str(svc.cpus))
        assert limits.get("memory") == (None if svc.memory_mb is None else f"{svc.memory_mb}M")


def test_published_ports_are_exactly_the_catalogs_on_the_tasks_node_without_the_routing_mesh(document: dict) -> None:
    for svc in catalog.SERVICES:
        ports = document["services"][svc.name].get("ports", [])
        if svc.published:
            assert ports == [{"target": svc.ports[0], "published": svc.ports[0], "protocol": "tcp", "mode": "host"}]
        else:
            assert ports == []
        assert document["services"][svc.name]["deploy"]["endpoint_mode"] == "dnsrr"


def test_no_secret_is_written_only_referenced(document: dict, tmp_path: Path) -> None:
    text = write_stack(tmp_path).read_text()
    for name in COMPOSE_SECRETS:
        if name in text:
            assert f"${{{name}:?" in text


def test_scraped_services_carry_the_labels_prometheus_names_targets_by(document: dict) -> None:
    for svc in catalog.SERVICES:
        labels = document["services"][svc.name]["deploy"].get("labels", {})
        if svc.scraped:
            assert labels == {
                LABEL_SERVICE: svc.name,
                LABEL_PORT: str(svc.ports[0]),
                LABEL_NUMBERED: str(numbered(svc)).lower(),
            }
        else:
            assert labels == {}


def test_images_can_be_pinned_to_a_build(tmp_path: Path) -> None:
    images = {"scalelab/services:latest": "scalelab/services:0123456789ab"}
    document = stack_document(tmp_path, images=images)
    assert document["services"]["cache"]["image"] == "scalelab/services:0123456789ab"
    assert document["services"]["dashboard"]["image"] == "scalelab/control:latest"


def test_a_service_left_out_takes_its_configs_and_volumes_with_it(tmp_path: Path) -> None:
    kept = [svc.name for svc in catalog.SERVICES if svc.name != "grafana"]
    document = stack_document(tmp_path, kept)
    assert "grafana" not in document["services"]
    used = {item["source"] for spec in document["services"].values() for item in spec.get("configs", [])}
    assert set(document["configs"]) == used
    for name, spec in document["configs"].items():
        assert Path(spec["file"]).is_file(), name


def test_config_names_change_with_their_content(tmp_path: Path) -> None:
    first = set(stack_document(tmp_path / "a")["configs"])
    assert first == set(stack_document(tmp_path / "b")["configs"])  # same content, same names: a redeploy reuses them


def test_prometheus_accepts_the_swarm_configuration(tmp_path: Path) -> None:
    promtool = promtool_path()
    document = stack_document(tmp_path)
    targets = {item["target"]: item["source"] for item in document["services"]["prometheus"]["configs"]}
    # Lay the configs out as the task sees them, so promtool also finds the rule files.
    root = tmp_path / "etc"
    for target, source in targets.items():
        path = root / Path(target).relative_to("/etc/prometheus")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Path(document["configs"][source]["file"]).read_bytes())
    done = subprocess.run([promtool, "check", "config", str(root / "prometheus.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_names_swarm_targets_as_every_mode_does() -> None:
    config = stack_prometheus_config()
    job = config["scrape_configs"][0]
    assert job["job_name"] == "scalelab" and job["dockerswarm_sd_configs"][0]["role"] == "tasks"
    targets = {rule.get("target_label") for rule in job["relabel_configs"]}
    assert {"instance", "service", "__address__"} <= targets
