"""The README is the user's guide: a screen or two, the set-up commands first, a link to every page of docs/."""

from __future__ import annotations

from tests.docs import DOCS, README, ROOT, links_of

MAX_LINES = 200
HEAD_LINES = 15


def test_readme_fits_on_a_screen_or_two() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_LINES, f"README.md has {lines} lines; move detail into docs/ (at most {MAX_LINES})"


def test_readme_opens_with_the_two_setup_commands() -> None:
    head = README.read_text().splitlines()[:HEAD_LINES]
    assert any(line.startswith("make run") for line in head), (
        f"no line starts with `make run` in the first {HEAD_LINES}"
    )
    assert any(line.startswith("make test") for line in head), (
        f"no line starts with `make test` in the first {HEAD_LINES}"
    )


def test_readme_links_every_page_of_docs() -> None:
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links_of(README.read_text())}
    missing = [str(page.relative_to(ROOT)) for page in DOCS if page.resolve() not in linked]
    assert not missing, f"README.md does not link {', '.join(missing)}"
