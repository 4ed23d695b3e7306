"""The distribution: every package is shipped, every import is declared, the services' image needs only theirs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CODE = ("services", "scalelab", "dashboard")


def _imports(folder: Path) -> set[str]:
    """Return the top-level names imported by the Python files under ``folder``."""
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _third_party(names: set[str]) -> set[str]:
    return {name for name in names if name not in sys.stdlib_module_names and name not in (*CODE, "tests")}


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _distributions_of(modules: set[str]) -> set[str]:
    """Return the distributions that provide ``modules`` in this environment."""
    providers = importlib.metadata.packages_distributions()
    found = set()
    for module in modules:
        assert module in providers, f"{module} is imported but no installed distribution provides it"
        found.update(name.lower().replace("_", "-") for name in providers[module])
    return found


DECLARED = {_distribution(r) for r in PYPROJECT["project"]["dependencies"]}


def test_every_code_package_is_shipped() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts) for top in CODE for init in (REPO / top).rglob("__init__.py")
    }
    assert on_disk <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(on_disk - listed)}"


def _folder(package: str) -> Path:
    """Return the folder a package is built from (the stack files are mapped from prometheus/ and grafana/)."""
    for prefix, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items():
        if package == prefix or package.startswith(prefix + "."):
            return REPO / folder / Path(*package[len(prefix) :].split(".")[1:])
    return REPO / Path(*package.split("."))


def test_shipped_data_files_exist() -> None:
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list(_folder(package).glob(pattern)), f"{package}: nothing matches {pattern} in {_folder(package)}"


def test_every_import_is_declared_and_every_declared_package_imported() -> None:
    imported = _distributions_of(_third_party(set().union(*(_imports(REPO / top) for top in CODE))))
    assert imported - DECLARED == set(), "declare these in pyproject.toml dependencies"
    assert DECLARED - imported == set(), "nothing imports these: drop them from pyproject.toml dependencies"


def test_the_services_image_installs_exactly_what_the_services_import() -> None:
    lines = (REPO / "services" / "requirements.txt").read_text().splitlines()
    required = {_distribution(line) for line in lines if line and not line.startswith(("#", "-"))}
    assert "-c ../.ci/constraints.txt" in lines, "the image must install the pinned versions"
    imported = _distributions_of(_third_party(_imports(REPO / "services")))
    assert required == imported
    assert required <= DECLARED


def test_the_constraints_pin_every_declared_package() -> None:
    pins = {
        _distribution(line): line.split("==", 1)[1]
        for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    test_extra = {_distribution(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert (DECLARED | test_extra) - set(pins) == set(), "run `make lock` and commit .ci/constraints.txt"
