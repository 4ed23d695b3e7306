"""Static checks of the Grafana provisioning and dashboards."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import yaml

from scalelab.generate.dashboards import DATASOURCE_UID, dashboard_dir, dashboards, panel_queries, render

DASHBOARD_DIR = dashboard_dir()

GRAFANA = DASHBOARD_DIR.parent


def _committed() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def test_committed_dashboards_are_what_the_generator_makes() -> None:
    generated = dashboards()
    assert sorted(generated) == sorted(_committed()), "run: python -m scalelab.generate.dashboards"
    for name, dashboard in generated.items():
        assert (DASHBOARD_DIR / name).read_text() == render(dashboard), f"{name} is stale; regenerate it"


def test_dashboard_uids_are_unique_and_fixed() -> None:
    uids = [dashboard["uid"] for dashboard in _committed().values()]
    assert len(uids) == len(set(uids)) and all(uids)
    assert "scalelab-overview" in uids


def test_panel_ids_are_unique_and_positions_do_not_overlap() -> None:
    for name, dashboard in _committed().items():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        cells = set()
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, panel["title"]
            for dx in range(pos["w"]):
                for dy in range(pos["h"]):
                    cell = (pos["x"] + dx, pos["y"] + dy)
                    assert cell not in cells, f"{name}: {panel['title']!r} overlaps another panel"
                    cells.add(cell)


def test_every_panel_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    assert uids == {DATASOURCE_UID}
    for name, dashboard in _committed().items():
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
            assert panel["targets"], (name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] == DATASOURCE_UID
        for annotation in dashboard["annotations"]["list"]:
            assert annotation["datasource"]["uid"] == DATASOURCE_UID


def test_every_query_is_listed_for_the_live_check() -> None:
    overview = _committed()["scalelab-overview.json"]
    titles = [title for title, _expr in panel_queries(overview)]
    panels_with_queries = [p for p in overview["panels"] if p.get("targets")]
    assert len(titles) == sum(len(p["targets"]) for p in panels_with_queries) + len(overview["annotations"]["list"])


def test_provider_points_at_the_dashboards_and_grafana_allows_anonymous_embedding() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/scalelab.yml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    ini = configparser.ConfigParser()
    ini.read(GRAFANA / "grafana.ini")
    assert ini["auth.anonymous"]["enabled"] == "true" and ini["auth.anonymous"]["org_role"] == "Viewer"
    assert ini["security"]["allow_embedding"] == "true"
    home = Path(ini["dashboards"]["default_home_dashboard_path"]).name
    assert (DASHBOARD_DIR / home).exists()
