"""The README and docs/ stay true: the generated settings page, and every link, path and command they name."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

from scalelab.cli.main import build_parser
from tests.docs import CONFIGURATION, PAGES, ROOT, anchors_of, code_of, links_of, prose_of, render_configuration

MAKE = re.compile(r"(?<![\w/.$-])make[ \t]+([^\n#;&|]*)")
# A command may be named with its path (.venv/bin/python) and starts the code or follows a blank or an operator.
COMMAND_START = r"(?:(?<=[\s;&|(])|^)(?:[\w.~-]*/)*"
PYTHON_M = re.compile(COMMAND_START + r"python3?[ \t]+-m[ \t]+([\w.]+)")
SCALELAB_VERB = re.compile(COMMAND_START + r"scalelab[ \t]+([a-z][a-z-]*)")
# A path in the repository, as written in code: services/kit/pool.py, scalelab/orchestrators/, ...
TREE_PATH = re.compile(r"^(?:\./)?((?:services|scalelab|dashboard|tests|prometheus|grafana|docs|\.ci)/[\w./-]*)$")


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)[ \t]*:(?!=)", makefile, re.M))


def cli_verbs() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(commands.choices)


def module_exists(name: str) -> bool:
    """Return whether ``python -m name`` finds something: an importable module or a module file in the tree."""
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file() or (base / "__main__.py").is_file():
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:
        return False


def test_configuration_page_is_what_the_settings_classes_say() -> None:
    assert CONFIGURATION.is_file(), "docs/configuration.md is missing: run `python -m tests.docs`"
    assert CONFIGURATION.read_text() == render_configuration(), (
        "docs/configuration.md differs from the settings classes: run `python -m tests.docs`"
    )


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_relative_link_points_to_a_file(page: Path) -> None:
    broken = []
    for target in links_of(page.read_text()):
        if re.match(r"^[a-z][a-z+.-]*:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        linked = page.parent / path if path else page
        if not linked.exists():
            broken.append(target)
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors_of(linked.read_text()):
            broken.append(target)
    assert not broken, f"{_ids(page)} links to missing files or headings: {', '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_code_spans_stay_on_one_line(page: Path) -> None:
    # The checks below read code spans line by line; one broken over two lines would pair the wrong backticks.
    prose = prose_of(page.read_text())
    split = [line for line in prose.splitlines() if line.count("`") % 2]
    assert not split, f"{_ids(page)} has a code span broken over two lines: {split[0]!r}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_make_target_exists(page: Path) -> None:
    targets = make_targets()
    named = []
    for code in code_of(page.read_text()):
        for arguments in MAKE.findall(code):
            named += [word for word in arguments.split() if "=" not in word and not word.startswith("-")]
    unknown = sorted(set(named) - targets)
    assert not unknown, f"{_ids(page)} names make targets the Makefile lacks: {', '.join(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_python_module_exists(page: Path) -> None:
    modules = {name for code in code_of(page.read_text()) for name in PYTHON_M.findall(code)}
    unknown = sorted(name for name in modules if not module_exists(name))
    assert not unknown, f"{_ids(page)} runs modules that do not exist: {', '.join(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_scalelab_verb_exists(page: Path) -> None:
    verbs = cli_verbs()
    named = {verb for code in code_of(page.read_text()) for verb in SCALELAB_VERB.findall(code)}
    unknown = sorted(named - verbs)
    assert not unknown, f"{_ids(page)} names scalelab commands that do not exist: {', '.join(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=_ids)
def test_every_path_in_the_tree_exists(page: Path) -> None:
    missing = []
    for code in code_of(page.read_text()):
        for word in code.split():
            found = TREE_PATH.match(word.rstrip(".,;:)"))
            if found and not (ROOT / found.group(1)).exists():
                missing.append(found.group(1))
    assert not missing, f"{_ids(page)} names paths that are not in the tree: {', '.join(sorted(set(missing)))}"
