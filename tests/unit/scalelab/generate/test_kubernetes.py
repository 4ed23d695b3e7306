"""The Kubernetes base: every document valid against the Kubernetes schemas, and what the catalog says of each service.

No cluster runs here: ``kubernetes-validate`` checks each document offline against the OpenAPI
schemas of the Kubernetes versions it bundles (strict: an unknown or misspelt field fails), and
The kustomization lists every file written (no cluster and no kubectl run here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from scalelab import catalog
from scalelab.cli.main import cli
from scalelab.generate import scrape
from scalelab.generate.compose import COMPOSE_SECRETS, compose_document
from scalelab.generate.kubernetes import (
    KUSTOMIZATION,
    NAMESPACE,
    SECRET_NAME,
    SECRETS_ENV_FILE,
    kustomization,
    manifests,
    prometheus_config,
    write,
)
from scalelab.paths import stack_file

MANIFESTS = manifests()
DOCUMENTS = [document for documents in MANIFESTS.values() for document in documents]
# The newest Kubernetes the package has schemas for, and the oldest: the base holds for both.
VERSIONS = (kubernetes_validate.latest_version(), all_versions()[0])
# `kubectl apply` keeps each object, whole, in an annotation that may hold this much.
LAST_APPLIED_LIMIT = 262_144


def _id(document: dict[str, Any]) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def _container(name: str) -> dict[str, Any]:
    (container,) = _find("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def _env(name: str) -> dict[str, Any]:
    """Return a container's variables: a value, or the valueFrom it is read from."""
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in _container(name).get("env", [])}


def _cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity[:-2])


def _env_refs() -> Iterator[tuple[str, str, Any]]:
    """Yield ``(deployment, variable, valueFrom)`` of every variable read from elsewhere."""
    for document in DOCUMENTS:
        if document["kind"] == "Deployment":
            for item in document["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if "valueFrom" in item:
                    yield document["metadata"]["name"], item["name"], item["valueFrom"]


# ---------------------------------------------------------------------------- the schemas


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("document", DOCUMENTS, ids=_id)
def test_every_document_validates_against_the_kubernetes_schemas(document: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    service = yaml.safe_load(yaml.safe_dump(_find("Service", "gateway")))
    service["spec"]["clusterIp"] = service["spec"].pop("clusterIP")
    with pytest.raises(kubernetes_validate.ValidationError, match="clusterIp"):
        kubernetes_validate.validate(service, VERSIONS[0], strict=True)


# ---------------------------------------------------------------------------- per service


@pytest.mark.parametrize("svc", catalog.SERVICES, ids=lambda svc: svc.name)
def test_every_catalog_service_has_a_deployment_and_a_service_that_selects_it(svc: catalog.Service) -> None:
    deployment = _find("Deployment", svc.name)
    service = _find("Service", svc.name)
    assert deployment["spec"]["replicas"] == len(svc.ports)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/name"] == svc.name
    assert pod_labels["app.kubernetes.io/part-of"] == "scalelab"
    (port,) = service["spec"]["ports"]
    assert port["port"] == svc.ports[0]
    (container_port,) = _container(svc.name)["ports"]
    assert container_port == {"name": port["targetPort"], "containerPort": svc.ports[0]}


def test_balanced_tiers_are_headless_and_their_pool_holders_discover_them() -> None:
    balanced = {svc.name for svc in catalog.balanced()}
    assert balanced, "the catalog balances nothing?"
    for svc, pool in catalog.pool_holders():
        assert _find("Service", svc.name)["spec"]["clusterIP"] == "None"
        holder = _env(pool.holder)
        assert holder[pool.discover_env] == f"{svc.name}:{svc.ports[0]}"
        assert pool.members_env not in holder, "a static list would be ignored, and misleads the reader"
    for svc in catalog.SERVICES:
        if svc.name not in balanced:
            assert "clusterIP" not in _find("Service", svc.name)["spec"], f"{svc.name} is reached through one address"


@pytest.mark.parametrize("svc", catalog.lab_services(), ids=lambda svc: svc.name)
def test_instances_are_named_after_their_pods_and_reach_others_by_service_name(svc: catalog.Service) -> None:
    env = _env(svc.name)
    pod_name = {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["SCALELAB_INSTANCE"] == pod_name
    if svc.id_env:
        assert env[svc.id_env] == pod_name
    for variable, target in svc.links.items():
        _find("Service", target)
        assert env[variable] == f"http://{target}:{catalog.service(target).ports[0]}"
    assert env["SCALELAB_SERVICE"] == svc.package
    assert env["SCALELAB_BIND"] == "0.0.0.0"


def test_every_lab_process_answers_to_its_service_name() -> None:
    # Its instance name is the pod's, and the others call it by its Service's name.
    for svc in catalog.SERVICES:
        if _container(svc.name)["image"].startswith("scalelab/"):
            assert _env(svc.name)["SCALELAB_ALLOWED_HOSTS"] == svc.name
            assert _env(svc.name)["SCALELAB_INSTANCE"] == {"fieldRef": {"fieldPath": "metadata.name"}}


@pytest.mark.parametrize("svc", catalog.SERVICES, ids=lambda svc: svc.name)
def test_limits_and_requests_are_the_catalogs(svc: catalog.Service) -> None:
    resources = _container(svc.name).get("resources", {})
    if svc.cpus is None and svc.memory_mb is None:
        assert resources == {}
        return
    if svc.cpus is not None:
        assert _cores(resources["limits"]["cpu"]) == svc.cpus
        assert 0 < _cores(resources["requests"]["cpu"]) <= svc.cpus
    if svc.memory_mb is not None:
        assert _mebibytes(resources["limits"]["memory"]) == svc.memory_mb
        assert _mebibytes(resources["requests"]["memory"]) == svc.memory_mb


@pytest.mark.parametrize("svc", catalog.SERVICES, ids=lambda svc: svc.name)
def test_probes_ask_the_health_path_on_the_service_port(svc: catalog.Service) -> None:
    container = _container(svc.name)
    (port,) = container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": svc.health_path, "port": port["name"]}


@pytest.mark.parametrize("svc", [s for s in catalog.SERVICES if s.data_files], ids=lambda svc: svc.name)
def test_data_files_live_in_a_volume(svc: catalog.Service) -> None:
    (mount,) = _container(svc.name)["volumeMounts"]
    volumes = {v["name"]: v for v in _find("Deployment", svc.name)["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mount["name"]] == {"name": mount["name"], "emptyDir": {}}
    for variable in svc.data_files:
        assert PurePosixPath(_env(svc.name)[variable]).parent == PurePosixPath(mount["mountPath"])


def test_the_autoscaler_scales_the_microservices_up_to_the_catalogs_maximum() -> None:
    microservice = catalog.service("microservice")
    autoscaler = _find("HorizontalPodAutoscaler", microservice.name)
    spec = autoscaler["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": microservice.name}
    assert spec["minReplicas"] == len(microservice.ports)
    assert spec["maxReplicas"] == microservice.max_instances
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    # Utilisation is a share of the request: without one the autoscaler cannot compute it.
    assert _container(microservice.name)["resources"]["requests"]["cpu"]


def test_only_the_services_that_scale_are_autoscaled_within_their_limits() -> None:
    autoscaled = {d["metadata"]["name"]: d["spec"] for d in DOCUMENTS if d["kind"] == "HorizontalPodAutoscaler"}
    assert set(autoscaled) == set(catalog.scalable())
    for name, spec in autoscaled.items():
        svc = catalog.service(name)
        assert (spec["minReplicas"], spec["maxReplicas"]) == (len(svc.ports), svc.max_instances)


def test_the_helpers_run_as_in_compose() -> None:
    composed = compose_document()["services"]
    for svc in catalog.SERVICES:
        if svc.runs == "service":
            continue
        container = _container(svc.name)
        assert container["image"] == composed[svc.name]["image"]
        # compose's `command` replaces the image's CMD, as `args` does (Kubernetes' `command` is the ENTRYPOINT).
        assert container.get("args") == composed[svc.name].get("command")
        assert "command" not in container


def test_the_control_page_drives_no_containers() -> None:
    env = _env("dashboard")
    assert env["SCALELAB_ORCHESTRATOR"] == "local"
    assert "DASHBOARD_DOCKER_IN_NETWORK" not in env
    assert "volumes" not in _find("Deployment", "dashboard")["spec"]["template"]["spec"]
    assert env["DASHBOARD_PROMETHEUS_URL"] == f"http://prometheus:{catalog.service('prometheus').ports[0]}"


# ---------------------------------------------------------------------------- secrets


def test_every_secret_is_read_from_the_generated_secret_and_all_are_written_by_scalelab_secrets() -> None:
    keys = set()
    for deployment, variable, source in _env_refs():
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["name"] == SECRET_NAME, f"{deployment} {variable}"
            keys.add(source["secretKeyRef"]["key"])
        else:
            assert "fieldRef" in source, f"{deployment} {variable} reads {source}"
    assert keys == set(COMPOSE_SECRETS)
    for document in DOCUMENTS:
        for item in (
            document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("env", [])
        ):
            if re.search("SECRET|TOKEN|PASSWORD", item["name"]):
                assert "secretKeyRef" in item.get("valueFrom", {}), f"{_id(document)} sets {item['name']} in the clear"


def test_no_secret_value_is_in_any_file(tmp_path: Path) -> None:
    secrets_env = tmp_path / SECRETS_ENV_FILE
    assert cli(["--run-dir", str(tmp_path / "run"), "secrets", "--env-file", str(secrets_env)]) == 0
    written = write(tmp_path)
    values = [
        line.partition("=")[2]
        for line in secrets_env.read_text().splitlines()
        if line.partition("=")[0] in COMPOSE_SECRETS
    ]
    assert len(values) == len(COMPOSE_SECRETS)
    assert secrets_env not in written
    for path in written:
        text = path.read_text()
        assert not [value for value in values if value in text], f"{path.name} holds a secret"
        assert "${" not in text, f"{path.name} holds a compose placeholder"


# ---------------------------------------------------------------------------- the base


def test_kustomization_lists_every_resource_file_written(tmp_path: Path) -> None:
    written = write(tmp_path)
    assert sorted(written) == sorted(tmp_path.iterdir())
    base = yaml.safe_load((tmp_path / KUSTOMIZATION).read_text())
    resources = {path.name for path in tmp_path.glob("*.yaml")} - {KUSTOMIZATION}
    assert sorted(base["resources"]) == sorted(resources)
    assert base == kustomization(list(MANIFESTS))
    assert base["namespace"] == NAMESPACE
    assert base["secretGenerator"] == [{"name": SECRET_NAME, "envs": [SECRETS_ENV_FILE]}]
    assert SECRETS_ENV_FILE in (tmp_path / ".gitignore").read_text().split()


def test_the_files_hold_the_manifests(tmp_path: Path) -> None:
    write(tmp_path)
    for name, documents in MANIFESTS.items():
        assert list(yaml.safe_load_all((tmp_path / name).read_text())) == documents, name


def test_config_maps_fit_what_kubectl_apply_can_record() -> None:
    for document in DOCUMENTS:
        if document["kind"] == "ConfigMap":
            assert len(yaml.safe_dump(document)) < LAST_APPLIED_LIMIT, _id(document)


def test_prometheus_scrapes_every_pod_of_a_scraped_service_labelled_as_everywhere() -> None:
    config = prometheus_config()
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == scrape.LAB_JOB]
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"own_namespace": True}}]
    relabel = job["relabel_configs"]
    (keep,) = [r for r in relabel if r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
               and r.get("action") == "keep"]  # fmt: skip
    for svc in catalog.SERVICES:
        kept = re.fullmatch(keep["regex"], svc.name) is not None
        assert kept == svc.scraped, svc.name
    targets = {r["target_label"]: r["source_labels"] for r in relabel if "target_label" in r}
    assert targets == {
        "instance": ["__meta_kubernetes_pod_name"],
        "service": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
    }
    (port_keep,) = [r for r in relabel if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]]
    for svc in catalog.SERVICES:
        if svc.scraped:
            assert [p["name"] for p in _container(svc.name)["ports"]] == [port_keep["regex"]]
    # Everything else is the compose stack's configuration: intervals, rule files, Prometheus's own job.
    composed = scrape.prometheus_config(scrape.compose_self_address())
    assert {k: v for k, v in config.items() if k != "scrape_configs"} == {
        k: v for k, v in composed.items() if k != "scrape_configs"
    }
    assert config["scrape_configs"][1:] == composed["scrape_configs"][1:]


def test_prometheus_reads_its_configuration_and_rules_where_its_command_says() -> None:
    container = _container("prometheus")
    config_file = PurePosixPath(next(a for a in container["args"] if a.startswith("--config.file=")).partition("=")[2])
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in _find("Deployment", "prometheus")["spec"]["template"]["spec"]["volumes"]}
    (config_mount,) = [m for m in mounts.values() if "configMap" in volumes[m["name"]]]
    assert PurePosixPath(config_mount["mountPath"]) == config_file.parent
    data = _find("ConfigMap", volumes[config_mount["name"]]["configMap"]["name"])["data"]
    files = {item["path"]: data[item["key"]] for item in volumes[config_mount["name"]]["configMap"]["items"]}
    assert yaml.safe_load(files[config_file.name]) == prometheus_config()
    for rule in scrape.RULE_FILES:
        assert files[rule] == stack_file("prometheus", *PurePosixPath(rule).parts).read_text()


def test_prometheus_may_list_and_watch_the_pods_of_its_namespace_and_nothing_more() -> None:
    pod = _find("Deployment", "prometheus")["spec"]["template"]["spec"]
    account = pod["serviceAccountName"]
    _find("ServiceAccount", account)
    binding = _find("RoleBinding", account)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    role = _find("Role", binding["roleRef"]["name"])
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    assert not [d for d in DOCUMENTS if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    tokens = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["automountServiceAccountToken"]
              for d in DOCUMENTS if d["kind"] == "Deployment"}  # fmt: skip
    assert {name for name, mounted in tokens.items() if mounted} == {"prometheus"}


def test_grafana_gets_the_files_compose_mounts_at_the_same_paths() -> None:
    container = _container("grafana")
    volumes = {v["name"]: v for v in _find("Deployment", "grafana")["spec"]["template"]["spec"]["volumes"]}
    mounted = {m["mountPath"]: m for m in container["volumeMounts"]}
    for volume in compose_document()["services"]["grafana"]["volumes"]:
        source, target = volume.split(":")[:2]
        mount = mounted[target]
        data = _find("ConfigMap", volumes[mount["name"]]["configMap"]["name"])["data"]
        path = stack_file(*PurePosixPath(source).parts)
        if path.is_file():
            assert data[mount["subPath"]] == path.read_text()
        else:
            items = volumes[mount["name"]]["configMap"]["items"]
            files = {item["path"]: data[item["key"]] for item in items}
            expected = {f.relative_to(path).as_posix(): f.read_text() for f in path.rglob("*") if f.is_file()}
            assert files == expected


def test_grafanas_datasource_is_the_prometheus_service() -> None:
    data = _find("ConfigMap", "grafana-provisioning")["data"]
    (datasource,) = yaml.safe_load(data["datasources_prometheus.yml"])["datasources"]
    prometheus = _find("Service", "prometheus")
    assert datasource["url"] == f"http://{prometheus['metadata']['name']}:{prometheus['spec']['ports'][0]['port']}"
