"""Three floors, arrows down only: dashboard -> scalelab -> services; the stack's shape is written in the catalog."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from scalelab import catalog

REPO = Path(__file__).resolve().parents[2]
FLOORS = ("dashboard", "scalelab", "services")


def _imported(folder: str) -> dict[str, set[str]]:
    """Return, per file under ``folder``, the top-level packages of the project it imports (lazy imports too)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / folder).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names & set(FLOORS)
    return found


@pytest.mark.parametrize(("floor", "above"), [("services", {"scalelab", "dashboard"}), ("scalelab", {"dashboard"})])
def test_a_floor_imports_nothing_above_it(floor: str, above: set[str]) -> None:
    offenders = {path: names & above for path, names in _imported(floor).items() if names & above}
    assert offenders == {}


def test_services_holds_the_services_and_their_kit_only() -> None:
    folders = {path.name for path in (REPO / "services").iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == {svc.package for svc in catalog.lab_services()} | {"kit"}


def _suspects(folder: str) -> list[tuple[str, str]]:
    """Return ``(file:line, text)`` of string constants that restate the stack outside the catalog.

    An instance name (``gateway-2``) or a port anywhere; a bare service name where code decides
    or lists by it: in a comparison, a tuple, list or set, a dict key, or a subscript. (A name
    that only labels something, such as a chart's id, is not the stack's shape.)
    """
    names = {svc.name for svc in catalog.lab_services()}
    ports = {str(port) for svc in catalog.SERVICES for port in svc.ports}
    instance = re.compile("(" + "|".join(map(re.escape, sorted(names))) + r")-\d+")
    found = []
    for path in (REPO / folder).rglob("*.py"):
        where = str(path.relative_to(REPO))
        if where == "scalelab/catalog.py":
            continue
        tree = ast.parse(path.read_text())
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                if not (isinstance(child, ast.Constant) and isinstance(child.value, str)):
                    continue
                text = child.value
                deciding = isinstance(parent, ast.Compare | ast.Tuple | ast.List | ast.Set | ast.Subscript) or (
                    isinstance(parent, ast.Dict) and child in parent.keys
                )
                if instance.fullmatch(text) or text in ports or (text in names and deciding):
                    found.append((f"{where}:{child.lineno}", text))
    return found


@pytest.mark.parametrize("folder", ["scalelab", "dashboard"])
def test_no_lab_service_name_or_port_is_written_outside_the_catalog(folder: str) -> None:
    assert _suspects(folder) == [], "derive these from scalelab.catalog"


def test_the_check_finds_what_it_looks_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "code.py").write_text(
        'A = ("gateway", "cache")\nB = x == "database"\nC = {"worker": 1}\nD = "gateway-2"\nE = "5004"\n'
        'F = chart("cache")\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = sorted(text for _where, text in _suspects("probe"))
    assert found == sorted(["gateway", "cache", "database", "worker", "gateway-2", "5004"])
